//go:build linux

package lb

import (
	"net"
	"syscall"
	"unsafe"
)

// rawWriter writes to a socket with a raw write(2), bypassing the runtime's
// syscall bookkeeping. A write to a loopback or LAN socket can run long
// enough (it does the receiving side's TCP work) for the runtime to hand the
// goroutine's processor to another thread, a thread wake-up per request; a
// raw write on a non-blocking socket never blocks, so the bookkeeping buys
// nothing here. When the socket is full the runtime's poller still waits,
// honouring deadlines.
type rawWriter struct {
	nc  net.Conn
	raw syscall.RawConn
	fn  func(fd uintptr) bool // bound once, so a write allocates nothing
	p   []byte
	n   int
	err error
}

func newRawWriter(nc net.Conn) *rawWriter {
	w := &rawWriter{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	w.fn = w.write
	return w
}

func (w *rawWriter) write(fd uintptr) bool {
	for len(w.p) > 0 {
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.p[0])), uintptr(len(w.p)))
		switch {
		case errno == syscall.EAGAIN:
			return false // wait until writable
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			w.err = errno
			return true
		}
		w.n += int(r)
		w.p = w.p[r:]
	}
	return true
}

func (w *rawWriter) Write(p []byte) (int, error) {
	if w.raw == nil || len(p) == 0 {
		return w.nc.Write(p)
	}
	w.p, w.n, w.err = p, 0, nil
	if err := w.raw.Write(w.fn); err != nil {
		w.p = nil
		return w.n, err
	}
	w.p = nil
	return w.n, w.err
}
