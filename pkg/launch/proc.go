package launch

import (
	"slices"
	"time"
)

// signal is what the fault commands do to a node's process.
type signal int

const (
	sigKill signal = iota // SIGKILL: die now
	sigTerm               // SIGTERM: drain and stop
	sigStop               // SIGSTOP: freeze
	sigCont               // SIGCONT: thaw
)

// procInfo is what the system says about a live process.
type procInfo struct {
	state byte  // ps/proc state letter: R, S, D, T (stopped), Z (zombie)...
	rss   int64 // resident memory, bytes
	args  []string
}

// lookupNode returns the live process of node n: pid n.PID, not a zombie,
// and still the node's own (its command line names it), so that a reused
// pid is never signalled.
func lookupNode(n Node) (procInfo, bool) {
	if n.PID <= 0 {
		return procInfo{}, false
	}
	info, ok := readProc(n.PID)
	if !ok || info.state == 'Z' || info.state == 'X' {
		return procInfo{}, false
	}
	i := slices.Index(info.args, "--name")
	if i < 0 || i+1 >= len(info.args) || info.args[i+1] != n.Name {
		return procInfo{}, false
	}
	return info, true
}

// waitGone polls until n's process is gone or d passes.
func waitGone(n Node, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, ok := lookupNode(n); !ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
