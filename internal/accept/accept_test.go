package accept_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/accept"
)

// script is a listener whose Accept returns its results in turn, then
// net.ErrClosed.
type script struct {
	results []error // nil: a connection
	calls   atomic.Int32
}

func (l *script) Accept() (net.Conn, error) {
	i := int(l.calls.Add(1)) - 1
	if i >= len(l.results) {
		return nil, net.ErrClosed
	}
	if err := l.results[i]; err != nil {
		return nil, err
	}
	c, _ := net.Pipe()
	return c, nil
}
func (*script) Close() error   { return nil }
func (*script) Addr() net.Addr { return &net.TCPAddr{} }

func TestServeBacksOffOnErrors(t *testing.T) {
	fail := errors.New("accept: too many open files")
	ln := &script{results: []error{fail, fail, fail, nil, fail, nil}}
	var got int
	start := time.Now()
	accept.Serve(context.Background(), ln, accept.Config{}, func(c net.Conn) { got++; c.Close() })
	if got != 2 {
		t.Fatalf("handled %d connections, want 2", got)
	}
	// 5 + 10 + 20 ms, then 5 again after a success reset the pause.
	if d, want := time.Since(start), 40*time.Millisecond; d < want {
		t.Errorf("Serve returned after %v, want at least %v of pauses", d, want)
	}
	if n := ln.calls.Load(); n != 7 {
		t.Errorf("Accept called %d times, want 7", n)
	}
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	fail := errors.New("accept: too many open files")
	ln := &script{results: make([]error, 1000)}
	for i := range ln.results {
		ln.results[i] = fail
	}
	done := make(chan struct{})
	go func() {
		accept.Serve(ctx, ln, accept.Config{}, func(net.Conn) {})
		close(done)
	}()
	time.Sleep(20 * time.Millisecond) // within the backoff of a failing listener
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Serve still running 2s after its context ended")
	}
}

func TestServeWaitsForASlot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln := &script{results: make([]error, 3)} // three connections
	slots := make(chan struct{}, 2)
	handled := make(chan net.Conn, 3)
	done := make(chan struct{})
	go func() {
		accept.Serve(ctx, ln, accept.Config{Slots: slots}, func(c net.Conn) { handled <- c })
		close(done)
	}()
	<-handled
	<-handled
	select {
	case <-handled:
		t.Fatal("a third connection accepted while both slots were held")
	case <-time.After(50 * time.Millisecond):
	}
	if n := ln.calls.Load(); n != 2 {
		t.Fatalf("Accept called %d times at the cap, want 2", n)
	}
	<-slots // a connection closes
	select {
	case <-handled:
	case <-time.After(2 * time.Second):
		t.Fatal("no accept after a slot was given back")
	}
	// The fourth Accept reports the listener closed: its slot comes back.
	<-slots
	<-slots
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Serve still running after the listener closed")
	}
	if len(slots) != 0 {
		t.Errorf("%d slots held after the listener closed, want 0", len(slots))
	}
}
