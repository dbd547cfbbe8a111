//go:build linux

// Package rawio holds the few system calls that the event loops of the
// cache (pkg/cache) and the load balancer (pkg/lb) make on non-blocking
// sockets they own. Such calls return at once, so they go straight to the
// kernel (RawSyscall) and skip the runtime's preparation for a call that
// might block.
package rawio

import (
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// Read reads from a non-blocking fd; n is -1 with the errno on failure
// (EAGAIN when nothing is there).
func Read(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Write writes to a non-blocking fd; n is -1 with the errno on failure
// (EAGAIN when the socket is full).
func Write(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// PollNow returns the events that are ready on epfd without waiting.
func PollNow(epfd int, events []syscall.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// SpinPoll polls without blocking until an event arrives or d has passed
// (a loop's busy poll). A peer that sends within d then finds the loop
// running: its write(2) does not have to wake a sleeping thread, which on a
// loopback socket is part of the sender's system time. The price is up to d
// of CPU after each burst of traffic, and none when the loop is idle.
func SpinPoll(epfd int, events []syscall.EpollEvent, d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		n, err := PollNow(epfd, events)
		if n != 0 || err != nil {
			return n, err
		}
		if i%16 == 15 && time.Now().After(deadline) {
			return 0, nil
		}
	}
}

// TakeFD duplicates nc's socket, non-blocking and close-on-exec as nc's is,
// so that an event loop can own the duplicate once nc is closed (which also
// takes the socket out of Go's poller). Go's TCP connections already have
// TCP_NODELAY set.
func TakeFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T is not a syscall.Conn", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	err = rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, fmt.Errorf("dup: %w", err)
	}
	return fd, nil
}
