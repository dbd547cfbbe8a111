//go:build unix

package launch

import (
	"fmt"
	"os"
	"syscall"
)

// send delivers s to one process (not its group: a node is a single
// process).
func send(pid int, s signal) error {
	sig := map[signal]syscall.Signal{
		sigKill: syscall.SIGKILL, sigTerm: syscall.SIGTERM,
		sigStop: syscall.SIGSTOP, sigCont: syscall.SIGCONT,
	}[s]
	return syscall.Kill(pid, sig)
}

func supported() bool { return true }

// signaled returns the name of the signal that ended a process, if one did.
func signaled(ps *os.ProcessState) (string, bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return "", false
	}
	names := map[syscall.Signal]string{
		syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT",
		syscall.SIGQUIT: "SIGQUIT", syscall.SIGABRT: "SIGABRT", syscall.SIGSEGV: "SIGSEGV",
		syscall.SIGBUS: "SIGBUS", syscall.SIGHUP: "SIGHUP", syscall.SIGPIPE: "SIGPIPE",
	}
	if n, ok := names[ws.Signal()]; ok {
		return n, true
	}
	return fmt.Sprintf("signal %d (%s)", int(ws.Signal()), ws.Signal()), true
}
