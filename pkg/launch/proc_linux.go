package launch

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts a node in its own process group, so the terminal's
// Ctrl-C reaches node up alone and node up stops the nodes in order; and
// asks the kernel to SIGKILL the node if node up dies without stopping it,
// so no node outlives its parent. SIGKILL rather than SIGTERM because a
// paused (SIGSTOPped) node would hold a SIGTERM forever, and a node loses no
// acknowledged write to SIGKILL (DESIGN.md, "Failure and bad input").
//
// Pdeathsig fires when the OS thread that forked the child exits, not the
// process; the Go runtime only ends threads of goroutines that exit while
// locked with runtime.LockOSThread, which this program never does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// readProc reads a process's state, resident memory and command line from
// /proc. ok is false when there is no such process.
func readProc(pid int) (procInfo, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return procInfo{}, false
	}
	var info procInfo
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if v != "" {
				info.state = v[0]
			}
		case "VmRSS":
			kb, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			info.rss = kb * 1024
		}
	}
	if cmd, err := os.ReadFile(dir + "/cmdline"); err == nil {
		info.args = strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	}
	return info, true
}
