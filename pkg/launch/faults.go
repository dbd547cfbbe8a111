package launch

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// The fault commands act on the pids in cluster.json directly: node up
// reaps what exits and records how, so `node ps` shows it.

// Process states shown by `node ps`.
const (
	StateRunning = "running" // the process runs
	StatePaused  = "paused"  // stopped by SIGSTOP (`node pause`)
	StateStopped = "stopped" // exited cleanly, e.g. after `node stop`
	StateDead    = "dead"    // killed or crashed
)

// Process is one row of `node ps`.
type Process struct {
	Node
	// State is running, paused, stopped or dead.
	State string
	// RSS is the resident memory in bytes of a live process.
	RSS int64
	// Uptime is how long the live process has run.
	Uptime time.Duration
	// Store is the live role of a running store node, from its /status;
	// nil for a node that is not a store node, not running, or did not
	// answer in time (a paused one). Roles are only where it started.
	Store *StoreRole
}

// PS describes every node of the stack in dir, asking each running store
// node for its live role (all at once, each for at most 800ms). up says
// whether node up still runs it.
func PS(dir string) (procs []Process, st State, up bool, err error) {
	st, err = LoadState(dir)
	if err != nil {
		return nil, st, false, err
	}
	admins := map[string]string{}
	for _, n := range st.Nodes {
		if _, live := lookupNode(n); live && IsStoreNode(n.Roles) {
			admins[n.Name] = n.Admin
		}
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	roles := FetchStoreRoles(context.Background(), client, "", admins)
	for _, n := range st.Nodes {
		p := Process{Node: n}
		info, live := lookupNode(n)
		switch {
		case live && (info.state == 'T' || info.state == 't'):
			p.State = StatePaused
		case live:
			p.State = StateRunning
		case !n.Running && n.ExitClean:
			p.State = StateStopped
		default:
			p.State = StateDead
			if n.Running && n.Exit == "" {
				p.Exit = "gone (node up did not see it end)"
			}
		}
		if r, ok := roles[n.Name]; ok && live {
			p.Store = &r
		}
		if live {
			p.RSS = info.rss
			if !n.StartedAt.IsZero() {
				p.Uptime = time.Since(n.StartedAt)
			}
		}
		procs = append(procs, p)
	}
	return procs, st, st.StoppedAt.IsZero() && upAlive(st.UpPID), nil
}

// Kill sends SIGKILL to a node and waits until its process is gone.
func Kill(dir, name string) (Node, error) {
	n, err := liveNode(dir, name)
	if err != nil {
		return n, err
	}
	if err := send(n.PID, sigKill); err != nil {
		return n, fmt.Errorf("kill %s (pid %d): %w", name, n.PID, err)
	}
	if !waitGone(n, 5*time.Second) {
		return n, fmt.Errorf("%s (pid %d) is still there 5s after SIGKILL", name, n.PID)
	}
	return n, nil
}

// Stop sends SIGTERM to a node (and SIGCONT, so a paused node can act on
// it) and waits up to timeout for it to drain and exit.
func Stop(dir, name string, timeout time.Duration) (Node, error) {
	n, err := liveNode(dir, name)
	if err != nil {
		return n, err
	}
	if err := send(n.PID, sigTerm); err != nil {
		return n, fmt.Errorf("stop %s (pid %d): %w", name, n.PID, err)
	}
	send(n.PID, sigCont)
	if !waitGone(n, timeout) {
		st, _ := LoadState(dir)
		return n, fmt.Errorf("%s (pid %d) did not stop within %s of SIGTERM: end it with `%s kill %s`", name, n.PID, timeout, st.Command(), name)
	}
	return n, nil
}

// Pause freezes a node with SIGSTOP: its sockets stay open but nothing
// answers, which is how a hung machine looks to its peers.
func Pause(dir, name string) (Node, error) {
	n, err := liveNode(dir, name)
	if err != nil {
		return n, err
	}
	if err := send(n.PID, sigStop); err != nil {
		return n, fmt.Errorf("pause %s (pid %d): %w", name, n.PID, err)
	}
	return n, nil
}

// Resume thaws a paused node with SIGCONT.
func Resume(dir, name string) (Node, error) {
	n, err := liveNode(dir, name)
	if err != nil {
		return n, err
	}
	if err := send(n.PID, sigCont); err != nil {
		return n, fmt.Errorf("resume %s (pid %d): %w", name, n.PID, err)
	}
	return n, nil
}

// liveNode finds a node whose process is alive.
func liveNode(dir, name string) (Node, error) {
	st, err := LoadState(dir)
	if err != nil {
		return Node{}, err
	}
	n, err := st.Find(name)
	if err != nil {
		return Node{}, err
	}
	if _, ok := lookupNode(*n); !ok {
		how := n.Exit
		if how == "" {
			how = "its process is gone"
		}
		return *n, fmt.Errorf("%s is not running (%s): start it with `%s start %s`", name, how, st.Command(), name)
	}
	return *n, nil
}
