//go:build linux

package rawio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Handler is a server's side of an event loop run by Poller.Run: the loop
// waits and dispatches, the handler owns the connections. Run calls it from
// the loop's goroutine only.
type Handler[T any] interface {
	// Woken is called when the loop is woken (Poller.Wake or Hand), with
	// the items handed to it since the last call, possibly none.
	Woken(items []T)
	// Event handles the events (EPOLLIN, ...) of one registered fd.
	Event(fd int32, events uint32)
	// Tick runs after each round of events, with the current time. It
	// returns when the loop must run again if no event comes first; the
	// zero Time means only on an event.
	Tick(now time.Time) time.Time
}

// RunConfig says how an idle loop waits.
type RunConfig struct {
	// Spin is how long the loop polls on without blocking once no event is
	// ready, before it blocks in epoll_wait (see SpinPoll). It does not
	// apply to a loop that parks in Go's poller (File). Zero: no spin.
	Spin time.Duration
}

// Run is the event loop: it polls for events, hands each to h, and calls
// h.Tick, until ctx ends (checked after each wait; Wake the loop to stop it
// at once) or epoll fails. Under load events are nearly always waiting,
// and a non-blocking poll finds them without the runtime's bookkeeping for
// a blocking system call. When none is ready, a Poller whose File was
// taken parks its goroutine in Go's poller until the epoll instance is
// readable or h.Tick's time comes, rather than block its thread in
// epoll_wait: a goroutine blocked in a system call has its processor taken
// by the runtime's monitor thread and another thread woken to hold it,
// which cost about one context switch per request more at moderate load.
// Other pollers spin for cfg.Spin and then block in epoll_wait.
func (p *Poller[T]) Run(ctx context.Context, h Handler[T], cfg RunConfig) error {
	events := make([]syscall.EpollEvent, 256)
	var n int
	var err error
	poll := func(uintptr) bool {
		n, err = PollNow(p.FD, events)
		return n != 0 || err != nil
	}
	var parkedUntil time.Time
	due := h.Tick(time.Now())
	for {
		if !poll(0) {
			if p.raw != nil {
				if perr := p.park(poll, due, &parkedUntil); perr != nil {
					err = perr
				}
			} else {
				n, err = p.block(events, cfg.Spin, due)
			}
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		for i := range n {
			ev := &events[i]
			if p.IsWake(ev.Fd) {
				h.Woken(p.Drain())
			} else {
				h.Event(ev.Fd, ev.Events)
			}
		}
		n, err = 0, nil
		due = h.Tick(time.Now())
	}
}

// park waits in Go's poller until poll finds events or due passes. The
// read deadline is set only when due changes: setting it costs a timer
// update.
func (p *Poller[T]) park(poll func(uintptr) bool, due time.Time, parkedUntil *time.Time) error {
	if !due.Equal(*parkedUntil) {
		_ = p.file.SetReadDeadline(due)
		*parkedUntil = due
	}
	if err := p.raw.Read(poll); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}

// block spins for up to spin, then waits in epoll_wait until due.
func (p *Poller[T]) block(events []syscall.EpollEvent, spin time.Duration, due time.Time) (int, error) {
	if spin > 0 {
		if n, err := SpinPoll(p.FD, events, spin); n != 0 || err != nil {
			return n, err
		}
	}
	timeout := -1
	if !due.IsZero() {
		timeout = max(int(time.Until(due).Milliseconds())+1, 0)
	}
	return syscall.EpollWait(p.FD, events, timeout)
}
