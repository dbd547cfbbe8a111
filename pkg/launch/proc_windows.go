package launch

import (
	"errors"
	"os"
	"syscall"
)

// Windows has no process groups, stop signals or /proc in the form the
// launcher uses: `node run` works there, `node up` does not.

func supported() bool { return false }

func sysProcAttr() *syscall.SysProcAttr { return nil }

func readProc(pid int) (procInfo, bool) { return procInfo{}, false }

func signaled(ps *os.ProcessState) (string, bool) { return "", false }

func send(pid int, s signal) error {
	return errors.New("node up and its fault commands need Linux or macOS")
}
