//go:build linux || darwin || freebsd || netbsd || openbsd

package lb

import (
	"net"
	"syscall"
)

// connAlive peeks at an idle connection without blocking: a backend that
// closed it (EOF) or sent something unasked makes it unusable.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		case rerr != nil, n == 0, n > 0:
			alive = false
		}
		return true
	})
	return err == nil && alive
}
