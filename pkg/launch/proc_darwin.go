//go:build unix && !linux

package launch

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts a node in its own process group, so the terminal's
// Ctrl-C reaches node up alone and node up stops the nodes in order. These
// systems have no parent-death signal: if node up is killed with SIGKILL,
// `node ps` shows its nodes and `node kill` ends them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// readProc asks ps(1) for a process's state, resident memory and command
// line. ok is false when there is no such process. The command line is
// split on spaces, which is enough to find "--name NAME".
func readProc(pid int) (procInfo, bool) {
	out, err := exec.Command("ps", "-o", "state=,rss=,command=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return procInfo{}, false
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return procInfo{}, false
	}
	kb, _ := strconv.ParseInt(f[1], 10, 64)
	return procInfo{state: f[0][0], rss: kb * 1024, args: f[2:]}, true
}
