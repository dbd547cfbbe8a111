//go:build linux

package rawio

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// Poller is an event loop's epoll instance, with a pipe that wakes the loop
// and an inbox through which other goroutines hand it items (accepted
// connections). Only the loop calls Drain, Add and Close; Hand and Wake are
// for any goroutine.
type Poller[T any] struct {
	FD    int // the epoll instance
	wakeR int
	wakeW int
	file  *os.File        // FD in Go's poller, once File was called
	raw   syscall.RawConn // file's, for Run to park on

	mu     sync.Mutex
	inbox  []T
	closed bool
}

// NewPoller creates the epoll instance and its wake pipe.
func NewPoller[T any]() (*Poller[T], error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	var pipe [2]int
	if err := syscall.Pipe2(pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	p := &Poller[T]{FD: epfd, wakeR: pipe[0], wakeW: pipe[1]}
	if err := p.Add(p.wakeR, syscall.EPOLLIN); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("epoll_ctl wake pipe: %w", err)
	}
	return p, nil
}

// Add registers fd for events.
func (p *Poller[T]) Add(fd int, events uint32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	return syscall.EpollCtl(p.FD, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// IsWake reports whether an event's fd is the wake pipe; the loop then
// calls Drain.
func (p *Poller[T]) IsWake(fd int32) bool { return int(fd) == p.wakeR }

// Wake makes the loop's next wait return (or its current one).
func (p *Poller[T]) Wake() {
	syscall.Write(p.wakeW, []byte{1}) // a full pipe already means "wake up"
}

// Hand gives item to the loop and wakes it. It reports false when the loop
// has closed, and the caller must dispose of the item.
func (p *Poller[T]) Hand(item T) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.inbox = append(p.inbox, item)
	p.mu.Unlock()
	p.Wake()
	return true
}

// Drain empties the wake pipe and returns the items handed since the last
// Drain.
func (p *Poller[T]) Drain() []T {
	var buf [64]byte
	for {
		if n, _ := syscall.Read(p.wakeR, buf[:]); n <= 0 {
			break
		}
	}
	p.mu.Lock()
	items := p.inbox
	p.inbox = nil
	p.mu.Unlock()
	return items
}

// File registers the epoll instance in Go's own poller (an epoll instance
// is readable while it has events ready), so that the loop can park its
// goroutine on it with RawConn.Read instead of blocking its thread in
// epoll_wait. The file belongs to the Poller.
func (p *Poller[T]) File() (*os.File, syscall.RawConn, error) {
	if err := syscall.SetNonblock(p.FD, true); err != nil {
		return nil, nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(p.FD), "epoll")
	raw, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{}) // fails unless Go's poller took it
	}
	if err != nil {
		f.Close()
		p.FD = -1
		return nil, nil, fmt.Errorf("epoll fd in Go's poller: %w", err)
	}
	p.file, p.raw = f, raw
	return f, raw, nil
}

// Close stops Hand, closes the epoll instance and the pipe, and returns the
// items handed but never drained, for the loop to dispose of.
func (p *Poller[T]) Close() []T {
	p.mu.Lock()
	p.closed = true
	items := p.inbox
	p.inbox = nil
	p.mu.Unlock()
	p.closeFDs()
	return items
}

func (p *Poller[T]) closeFDs() {
	switch {
	case p.file != nil:
		p.file.Close()
	case p.FD >= 0:
		syscall.Close(p.FD)
	}
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
}
