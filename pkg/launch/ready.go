package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// StartError names the nodes that did not become ready, each with the end
// of its log, which usually says why (a port in use, a bad flag).
type StartError struct {
	Failed []FailedNode
}

// FailedNode is one node that did not become ready.
type FailedNode struct {
	Name string
	// Reason is how it failed: "exited with status 2", "not ready after 1m0s".
	Reason string
	// Log is the log file; Tail its last lines since the node's last start.
	Log  string
	Tail []string
}

func (e *StartError) Error() string {
	var b strings.Builder
	for i, f := range e.Failed {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s did not start: %s\n  last lines of %s:\n", f.Name, f.Reason, f.Log)
		for _, line := range f.Tail {
			b.WriteString("  | " + line + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// tailLines is how many lines of a failed node's log are shown.
const tailLines = 15

// WaitReady waits until every node reports itself ready, drawing a
// progress line. It fails as soon as a node's process exits, or when
// ReadyTimeout passes, with a *StartError; or when ctx is done. The caller
// then calls Close to stop the others.
func (l *Launcher) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	var names []string
	for _, n := range l.State().Nodes {
		names = append(names, n.Name)
	}
	if err := l.waitReady(ctx, names, l.cfg.Progress); err != nil {
		return err
	}
	l.ready.Store(true)
	return nil
}

// waitReady polls the named nodes' /status every 100ms until each says it
// is ready (what /readyz says, with the node's name to check).
func (l *Launcher) waitReady(ctx context.Context, names []string, progress io.Writer) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	defer client.CloseIdleConnections()
	start := time.Now()
	pending := slices.Clone(names)
	p := newProgressLine(progress)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var failed []FailedNode
		for _, name := range slices.Clone(pending) {
			n := l.node(name)
			if !n.Running {
				failed = append(failed, FailedNode{Name: name, Reason: n.Exit, Log: n.Log, Tail: logTail(n.Log, tailLines)})
				continue
			}
			// /status must name the node: whatever else answers on its
			// admin port (another stack on the same addresses) is not it.
			var st struct {
				Name  string            `json:"name"`
				Ready bool              `json:"ready"`
				Addrs map[string]string `json:"addrs"`
			}
			if !get(ctx, client, "http://"+n.Admin+"/status", &st) || st.Name != name || !st.Ready {
				continue
			}
			l.markReady(name, n.PID, st.Addrs)
			pending = slices.DeleteFunc(pending, func(s string) bool { return s == name })
		}
		p.draw(l, names, pending, time.Since(start))
		if len(failed) > 0 {
			p.done()
			return &StartError{Failed: failed}
		}
		if len(pending) == 0 {
			p.done()
			return nil
		}
		select {
		case <-ctx.Done():
			p.done()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				for _, name := range pending {
					n := l.node(name)
					failed = append(failed, FailedNode{Name: name, Reason: fmt.Sprintf("not ready after %s (http://%s/status never said ready)", time.Since(start).Round(time.Second), n.Admin),
						Log: n.Log, Tail: logTail(n.Log, tailLines)})
				}
				return &StartError{Failed: failed}
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// node returns a copy of the named node's state.
func (l *Launcher) node(name string) Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.st.Find(name)
	if err != nil {
		return Node{Name: name}
	}
	return *n
}

// markReady records that the process pid of a node is ready, and the
// addresses it reports.
func (l *Launcher) markReady(name string, pid int, addrs map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.st.Find(name)
	if err != nil || n.PID != pid {
		return
	}
	n.ReadyAt = time.Now().UTC()
	if len(addrs) > 0 {
		n.Addrs = addrs
	}
	if err := l.st.save(); err != nil {
		l.log.Warn("save state", "err", err)
	}
}

// get fetches url and reports whether it answered 200; the JSON body is
// decoded into out when out is not nil.
func get(ctx context.Context, c *http.Client, url string, out any) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return false
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out) == nil
	}
	io.Copy(io.Discard, resp.Body)
	return true
}

// logTail returns the last n lines of a node's log written since node up
// last started it.
func logTail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{fmt.Sprintf("(no log: %v)", err)}
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		f.Seek(fi.Size()-window, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if i := bytes.LastIndex(b, []byte(startMarker)); i >= 0 {
		if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
			b = b[i+j+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return []string{"(the log is empty)"}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// progressLine draws "waiting for N nodes" on a terminal in place (\r), or
// as one line per change elsewhere (a log file, a test), so that neither
// fills with repeats.
type progressLine struct {
	w    io.Writer
	tty  bool
	last string
}

func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w)}
}

func (p *progressLine) draw(l *Launcher, names, pending []string, elapsed time.Duration) {
	if p.w == nil {
		return
	}
	var ready, waiting []string
	for _, name := range names {
		if slices.Contains(pending, name) {
			waiting = append(waiting, name)
			continue
		}
		n := l.node(name)
		ready = append(ready, fmt.Sprintf("%s (%.1fs)", name, n.ReadyAt.Sub(n.StartedAt).Seconds()))
	}
	status := fmt.Sprintf("ready %d/%d", len(ready), len(names))
	if len(ready) > 0 {
		status += ": " + strings.Join(ready, ", ")
	}
	if len(waiting) > 0 {
		status += "; starting: " + strings.Join(waiting, ", ")
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K  %5.1fs  %s", elapsed.Seconds(), status)
		p.last = status
		return
	}
	if status != p.last {
		fmt.Fprintf(p.w, "  %5.1fs  %s\n", elapsed.Seconds(), status)
		p.last = status
	}
}

func (p *progressLine) done() {
	if p.w != nil && p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
