package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Removed is what RemoveNode did: the node as it was, and what it left.
type Removed struct {
	Node
	// Stopped says the node was running and was stopped gracefully first;
	// StopTook is how long that took.
	Stopped  bool          `json:"stopped"`
	StopTook time.Duration `json:"stop_took"`
	// Purged says its data directory and log were deleted; otherwise they
	// stay at Node.Data and Node.Log, and a node of the same name added
	// later (`node add` takes the lowest free number) starts from them.
	Purged bool `json:"purged"`
	// OpenURL is the stack's URL to open afterwards; URLMoved says it moved
	// to the next node of its group, since the node removed served it.
	OpenURL  string `json:"open_url"`
	URLMoved bool   `json:"url_moved"`
}

// RemoveNode takes a node out of the stack: a running node is stopped
// gracefully first, as `node stop` does (SIGTERM, then SIGKILL after
// StopTimeout), then it leaves cluster.json. Its data and log stay on disk
// unless purge. The last node of the group that serves the URL to open is
// refused: the stack would have no entry point.
func (l *Launcher) RemoveNode(ctx context.Context, name string, purge bool) (Removed, error) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return Removed{}, errors.New("node up is stopping")
	}
	n, err := l.st.Find(name)
	if err != nil {
		l.mu.Unlock()
		return Removed{}, err
	}
	open := l.st.Spec.Open
	if l.st.Spec.specOf(name).Prefix == open.Prefix {
		others := slices.DeleteFunc(slices.Clone(l.st.Nodes), func(o Node) bool {
			return o.Name == name || l.st.Spec.specOf(o.Name).Prefix != open.Prefix
		})
		if len(others) == 0 {
			l.mu.Unlock()
			return Removed{}, fmt.Errorf("%s is the last %s node and serves the URL to open (%s): the stack would have no entry point; `%s stop %s` stops it for a while", name, open.Port, l.st.URL, l.st.Command(), name)
		}
	}
	c := l.procs[name]
	out := Removed{Node: *n}
	l.mu.Unlock()

	if c != nil {
		began := time.Now()
		if err := l.stopChild(ctx, c); err != nil {
			return Removed{}, fmt.Errorf("stop %s before removing it: %w", name, err)
		}
		out.Stopped, out.StopTook = true, time.Since(began)
	}

	l.mu.Lock()
	if l.procs[name] != nil {
		// `node start` raced with the stop: leave the node be.
		l.mu.Unlock()
		return Removed{}, fmt.Errorf("%s was started again while it stopped: not removed", name)
	}
	i := slices.IndexFunc(l.st.Nodes, func(o Node) bool { return o.Name == name })
	if i < 0 {
		l.mu.Unlock()
		return Removed{}, fmt.Errorf("%s was removed meanwhile", name)
	}
	out.Node = l.st.Nodes[i]
	l.st.Nodes = slices.Delete(l.st.Nodes, i, i+1)
	if l.st.URL == out.URL(open.Port) {
		if j := slices.IndexFunc(l.st.Nodes, func(o Node) bool { return l.st.Spec.specOf(o.Name).Prefix == open.Prefix }); j >= 0 {
			l.st.URL = l.st.Nodes[j].URL(open.Port)
			out.URLMoved = true
		}
	}
	out.OpenURL = l.st.URL
	err = l.st.save()
	l.mu.Unlock()
	if err != nil {
		return out, err
	}

	if purge {
		var errs []error
		for _, p := range []string{out.Data, out.Log} {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return out, fmt.Errorf("%s removed, but --purge-data: %w", name, err)
		}
		out.Purged = true
	}
	what := []string{"data in " + out.Data, "log in " + out.Log}
	if out.Purged {
		what = []string{"data and log deleted"}
	}
	l.emit(Event{Kind: EventRemoved, Node: name, Detail: fmt.Sprintf("%s removed from the stack (%s)", name, strings.Join(what, ", "))})
	return out, nil
}

// stopChild stops a node's process as `node stop` does: SIGTERM, and
// SIGCONT so that a paused node can act on it, then SIGKILL if it has not
// exited after StopTimeout. It returns once node up has reaped it, or
// when ctx ends first.
func (l *Launcher) stopChild(ctx context.Context, c *child) error {
	pid := c.cmd.Process.Pid
	send(pid, sigTerm)
	send(pid, sigCont)
	t := time.NewTimer(l.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		send(pid, sigKill)
	case <-ctx.Done():
		return fmt.Errorf("%w (it is stopping, and stays in the stack)", ctx.Err())
	}
	<-c.done
	return nil
}
