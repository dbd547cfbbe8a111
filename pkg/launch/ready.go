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

// WaitReady waits until every node reports itself ready and the entry
// point serves through the whole topology (rotationGaps: every lb balances
// every app node, every edge uses every lb), drawing a progress line. It
// fails as soon as a node's process exits, or when ReadyTimeout passes,
// with a *StartError; or when ctx is done. The caller then calls Close to
// stop the others.
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
// is ready (what /readyz says, with the node's name to check), and then
// until no lb or edge leaves one of them out of its rotation.
func (l *Launcher) waitReady(ctx context.Context, names []string, progress io.Writer) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	defer client.CloseIdleConnections()
	start := time.Now()
	pending := slices.Clone(names)
	p := newProgressLine(progress)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var gaps []rotationGap
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
			var st nodeStatus
			if !get(ctx, client, "http://"+n.Admin+"/status", &st) || st.Name != name || !st.Ready {
				continue
			}
			l.markReady(name, n.PID, st.Addrs)
			pending = slices.DeleteFunc(pending, func(s string) bool { return s == name })
		}
		gaps = nil
		if len(pending) == 0 && len(failed) == 0 {
			gaps = l.rotationGaps(ctx, client, names)
		}
		p.draw(l, names, pending, gaps, time.Since(start))
		if len(failed) > 0 {
			p.done()
			return &StartError{Failed: failed}
		}
		if len(pending) == 0 && len(gaps) == 0 {
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
				for _, g := range gaps {
					n := l.node(g.front)
					failed = append(failed, FailedNode{Name: g.front, Reason: fmt.Sprintf("ready, but after %s %s", time.Since(start).Round(time.Second), g.reason()),
						Log: n.Log, Tail: logTail(n.Log, tailLines)})
				}
				return &StartError{Failed: failed}
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// nodeStatus is what the launcher reads of a node's /status: its name and
// readiness, its bound addresses, and the rotations of its lb and edge.
type nodeStatus struct {
	Name     string            `json:"name"`
	Ready    bool              `json:"ready"`
	Addrs    map[string]string `json:"addrs"`
	Members  []memberView      `json:"members"`
	Sections struct {
		LB *struct {
			Backends []struct {
				Name      string `json:"name"`
				State     string `json:"state"`
				LastCheck string `json:"last_check"`
			} `json:"backends"`
		} `json:"lb"`
		Edge *struct {
			Origins []string `json:"origins"`
		} `json:"edge"`
	} `json:"sections"`
}

// rotationGap is one hop of the stack that does not carry requests yet:
// front (an lb, an edge) does not send any to back (an app, an lb).
type rotationGap struct {
	front, back string
	// state is the back node's state in front's rotation ("" when front
	// does not list it), check its last health check's finding.
	state, check string
}

func (g rotationGap) String() string { return g.front + " → " + g.back }

func (g rotationGap) reason() string {
	switch {
	case g.state == "":
		return fmt.Sprintf("%s still does not know %s", g.front, g.back)
	case g.check != "":
		return fmt.Sprintf("%s still holds %s %s (last check: %s)", g.front, g.back, g.state, g.check)
	}
	return fmt.Sprintf("%s still holds %s %s", g.front, g.back, g.state)
}

// rotationGaps returns the hops the entry point does not serve through
// yet, among those that involve a named node: an lb that does not hold a
// ready app node healthy in its rotation, an edge that does not have a
// ready lb among its origins. Until there are none, "ready" would be a
// stack where every request still goes to the first app node (issue 17).
// A node that is not ready now (paused, dead) is left out: the hop cannot
// carry requests either way. An lb given --lb-backends, an edge given
// --edge-origin, does not use membership and is left out too.
func (l *Launcher) rotationGaps(ctx context.Context, client *http.Client, names []string) []rotationGap {
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	var apps, lbs, edges []Node
	status := map[string]nodeStatus{}
	for _, n := range l.State().Nodes {
		var group *[]Node
		switch {
		case slices.Contains(n.Roles, "lb") && !hasFlag(n.Args, "lb-backends", "backends"):
			group = &lbs
		case slices.Contains(n.Roles, "edge") && !hasFlag(n.Args, "edge-origin", "origin"):
			group = &edges
		case slices.Contains(n.Roles, "app"):
			group = &apps
		}
		if group == nil || !n.Running {
			continue
		}
		var st nodeStatus
		if get(ctx, client, "http://"+n.Admin+"/status", &st) && st.Name == n.Name && st.Ready {
			status[n.Name] = st
			*group = append(*group, n)
		}
	}
	var gaps []rotationGap
	for _, lb := range lbs {
		rot := status[lb.Name].Sections.LB
		if rot == nil {
			continue
		}
		for _, app := range apps {
			if !named[lb.Name] && !named[app.Name] {
				continue
			}
			g := rotationGap{front: lb.Name, back: app.Name}
			for _, b := range rot.Backends {
				if b.Name == app.Name {
					g.state, g.check = b.State, b.LastCheck
				}
			}
			if g.state != "healthy" {
				gaps = append(gaps, g)
			}
		}
	}
	for _, edge := range edges {
		rot := status[edge.Name].Sections.Edge
		if rot == nil {
			continue
		}
		for _, lb := range lbs {
			if !named[edge.Name] && !named[lb.Name] {
				continue
			}
			addr := status[lb.Name].Addrs["lb"]
			if !slices.Contains(rot.Origins, addr) {
				gaps = append(gaps, rotationGap{front: edge.Name, back: lb.Name})
			}
		}
	}
	return gaps
}

// hasFlag reports whether args set any of the flags named (--name or
// --name=value).
func hasFlag(args []string, flags ...string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains(flags, name) {
			return true
		}
	}
	return false
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

// progressLine draws the start of a stack as a count and what changed.
// Elsewhere than on a terminal (a log file, a test) it prints one line per
// change, naming only the nodes that became ready since the last line:
//
//	3.1s  ready 9/14 (+app-1 0.8s, +app-2 0.9s)
//
// On a terminal it redraws one short line in place: the count and the
// nodes still waited for, cut to progressWidth.
type progressLine struct {
	w     io.Writer
	tty   bool
	drawn bool
	last  string
	// rotating is true while every node is ready and an lb or an edge
	// does not serve through all of them yet.
	rotating bool
	shown    map[string]bool // nodes already reported ready
	// phasesShown are the phases of a large stack already reported
	// complete (phaseLines), begun says the first line was printed.
	phasesShown map[string]bool
	begun       bool
}

// phasedFrom is the size from which a stack's progress is told by phase
// (store nodes, service instances, the rest) rather than node by node:
// stage 10 is 26 nodes, and a line naming each would be a wall of names.
const phasedFrom = 16

// Phases of a large stack's start, in the order they complete.
const (
	phaseStore    = "store nodes"
	phaseServices = "service instances"
	phaseFront    = "gateways, workers, caches, lbs, edges"
)

// phaseOf returns the phase of a node in a large stack's start.
func phaseOf(n Node) string {
	switch {
	case IsStoreNode(n.Roles):
		return phaseStore
	case slices.Contains(n.Roles, "service"):
		return phaseServices
	}
	return phaseFront
}

// phaseCount is how many nodes of one phase there are, and are ready.
type phaseCount struct {
	name         string
	total, ready int
	slowest      string        // the node of the phase that took longest
	slowestTook  time.Duration // how long it took
}

// phases counts the nodes of each phase, in phase order, leaving out the
// phases the stack lacks.
func phases(l *Launcher, names, pending []string) []phaseCount {
	out := []phaseCount{{name: phaseStore}, {name: phaseServices}, {name: phaseFront}}
	for _, name := range names {
		n := l.node(name)
		i := slices.IndexFunc(out, func(p phaseCount) bool { return p.name == phaseOf(n) })
		out[i].total++
		if slices.Contains(pending, name) {
			continue
		}
		out[i].ready++
		if took := n.ReadyAt.Sub(n.StartedAt); took >= out[i].slowestTook {
			out[i].slowest, out[i].slowestTook = name, took
		}
	}
	return slices.DeleteFunc(out, func(p phaseCount) bool { return p.total == 0 })
}

// progressWidth bounds the line redrawn on a terminal, so that it fits a
// common window without wrapping (a wrapped line cannot be redrawn).
const progressWidth = 100

func newProgressLine(w io.Writer) *progressLine {
	return &progressLine{w: w, tty: isTerminal(w), shown: map[string]bool{}}
}

func (p *progressLine) draw(l *Launcher, names, pending []string, gaps []rotationGap, elapsed time.Duration) {
	if p.w == nil {
		return
	}
	var added, waiting []string
	for _, name := range names {
		if slices.Contains(pending, name) {
			waiting = append(waiting, name)
			continue
		}
		if !p.shown[name] {
			p.shown[name] = true
			n := l.node(name)
			added = append(added, fmt.Sprintf("+%s %.1fs", name, n.ReadyAt.Sub(n.StartedAt).Seconds()))
		}
	}
	count := fmt.Sprintf("ready %d/%d", len(names)-len(waiting), len(names))
	var hops []string
	for _, g := range gaps {
		hops = append(hops, g.String())
	}
	phased := len(names) >= phasedFrom
	if p.tty {
		line := fmt.Sprintf("  %5.1fs  %s", elapsed.Seconds(), count)
		switch {
		case len(waiting) > 0 && phased:
			for _, ph := range phases(l, names, pending) {
				line += fmt.Sprintf(", %s %d/%d", ph.name, ph.ready, ph.total)
			}
		case len(waiting) > 0:
			line += ", waiting: " + strings.Join(waiting, ", ")
		case len(hops) > 0:
			line += ", waiting for the rotation: " + strings.Join(hops, ", ")
		}
		fmt.Fprintf(p.w, "\r\033[K%s", truncate(line, progressWidth))
		p.drawn = true
		return
	}
	if phased {
		p.drawPhases(l, names, pending, hops, elapsed)
		return
	}
	// A line when something changed, and the first one, so that a slow
	// start shows it has begun. Once every node is ready, the wait for
	// the rotation is one line, and its end another.
	status := count
	if len(added) > 0 {
		status += " (" + strings.Join(added, ", ") + ")"
	}
	switch {
	case len(waiting) == 0 && len(hops) > 0 && !p.rotating:
		p.rotating = true
		fmt.Fprintf(p.w, "  %5.1fs  %s; waiting for the rotation: %s\n", elapsed.Seconds(), status, strings.Join(hops, ", "))
		p.last = status
		return
	case len(waiting) == 0 && len(hops) == 0 && p.rotating:
		p.rotating = false
		fmt.Fprintf(p.w, "  %5.1fs  %s; every lb and edge serves through every node\n", elapsed.Seconds(), status)
		p.last = status
		return
	case len(added) == 0 && p.last != "":
		return
	}
	fmt.Fprintf(p.w, "  %5.1fs  %s\n", elapsed.Seconds(), status)
	p.last = status
}

// drawPhases is the progress of a large stack off a terminal: a first line
// with the count of each phase, then one line per phase once all its
// nodes are ready, then the rotation's lines:
//
//	0.1s  starting 26 nodes: 15 store nodes, 5 service instances, 6 gateways, ...
//	3.9s  store nodes ready 15/15 (slowest content-db-3 3.1s)
func (p *progressLine) drawPhases(l *Launcher, names, pending, hops []string, elapsed time.Duration) {
	all := phases(l, names, pending)
	if !p.begun {
		p.begun = true
		var parts []string
		for _, ph := range all {
			parts = append(parts, fmt.Sprintf("%d %s", ph.total, ph.name))
		}
		fmt.Fprintf(p.w, "  %5.1fs  starting %d nodes: %s\n", elapsed.Seconds(), len(names), strings.Join(parts, ", "))
	}
	if p.phasesShown == nil {
		p.phasesShown = map[string]bool{}
	}
	for _, ph := range all {
		if ph.ready == ph.total && !p.phasesShown[ph.name] {
			p.phasesShown[ph.name] = true
			fmt.Fprintf(p.w, "  %5.1fs  %s ready %d/%d (slowest %s %.1fs)\n", elapsed.Seconds(), ph.name, ph.ready, ph.total, ph.slowest, ph.slowestTook.Seconds())
		}
	}
	switch {
	case len(pending) == 0 && len(hops) > 0 && !p.rotating:
		p.rotating = true
		fmt.Fprintf(p.w, "  %5.1fs  waiting for the rotation: %s\n", elapsed.Seconds(), strings.Join(hops, ", "))
	case len(pending) == 0 && len(hops) == 0 && p.rotating:
		p.rotating = false
		fmt.Fprintf(p.w, "  %5.1fs  every lb and edge serves through every node\n", elapsed.Seconds())
	}
}

// truncate cuts s to width runes, marking the cut with "…".
func truncate(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	return string(r[:width-1]) + "…"
}

func (p *progressLine) done() {
	if p.w != nil && p.tty && p.drawn {
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
