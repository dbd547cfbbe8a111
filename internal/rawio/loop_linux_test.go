//go:build linux

package rawio_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/rawio"
)

// recorder is a Handler that reads what arrives on one pipe and stops the
// loop once it has seen a handed item, a byte and a due tick.
type recorder struct {
	t      *testing.T
	p      *rawio.Poller[int]
	fd     int
	items  []int
	got    []byte
	ticks  int
	due    time.Time
	cancel context.CancelFunc
}

func (r *recorder) Woken(items []int) { r.items = append(r.items, items...) }

func (r *recorder) Event(fd int32, events uint32) {
	if int(fd) != r.fd {
		r.t.Errorf("Event(%d), want fd %d", fd, r.fd)
		return
	}
	var b [16]byte
	n, _ := syscall.Read(r.fd, b[:])
	if n > 0 {
		r.got = append(r.got, b[:n]...)
	}
}

func (r *recorder) Tick(now time.Time) time.Time {
	if !r.due.IsZero() && !now.Before(r.due) {
		r.ticks++
	}
	if len(r.items) > 0 && len(r.got) > 0 && r.ticks > 0 {
		r.cancel()
		r.p.Wake()
	}
	r.due = now.Add(20 * time.Millisecond)
	return r.due
}

func TestRun(t *testing.T) {
	for _, park := range []bool{false, true} {
		p, err := rawio.NewPoller[int]()
		if err != nil {
			t.Fatal(err)
		}
		if park {
			if _, _, err := p.File(); err != nil {
				t.Fatal(err)
			}
		}
		var pipe [2]int
		if err := syscall.Pipe2(pipe[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if err := p.Add(pipe[0], syscall.EPOLLIN); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &recorder{t: t, p: p, fd: pipe[0], cancel: cancel}
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, r, rawio.RunConfig{Spin: time.Millisecond}) }()
		p.Hand(7)
		syscall.Write(pipe[1], []byte("x"))
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("park %v: Run = %v", park, err)
			}
		case <-time.After(5 * time.Second):
			cancel()
			p.Wake()
			<-done
			t.Fatalf("park %v: Run still running after 5s: items %v, read %q, ticks %d", park, r.items, r.got, r.ticks)
		}
		if len(r.items) != 1 || r.items[0] != 7 || string(r.got) != "x" {
			t.Errorf("park %v: items %v, read %q; want [7], \"x\"", park, r.items, r.got)
		}
		p.Close()
		syscall.Close(pipe[0])
		syscall.Close(pipe[1])
	}
}
