package rawio

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestTakeFDReadWritePoll takes over one end of a loopback TCP connection
// and drives it with the package's calls: nothing to read is EAGAIN and no
// event, bytes from the peer are an event and a read, a write reaches the
// peer, and a closed peer reads as 0.
func TestTakeFDReadWritePoll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := TakeFD(nc)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close() // the duplicate stays open
	defer syscall.Close(fd)

	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(epfd)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		t.Fatal(err)
	}
	events := make([]syscall.EpollEvent, 4)
	buf := make([]byte, 16)
	if n, err := Read(fd, buf); n != -1 || err != syscall.EAGAIN {
		t.Fatalf("Read with nothing sent = %d, %v; want -1, EAGAIN", n, err)
	}
	if n, err := PollNow(epfd, events); n != 0 || err != nil {
		t.Fatalf("PollNow with nothing sent = %d, %v; want 0, nil", n, err)
	}
	start := time.Now()
	if n, err := SpinPoll(epfd, events, 5*time.Millisecond); n != 0 || err != nil || time.Since(start) < 5*time.Millisecond {
		t.Fatalf("SpinPoll with nothing sent = %d, %v after %v; want 0, nil after 5ms", n, err, time.Since(start))
	}

	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	n, err := SpinPoll(epfd, events, 2*time.Second)
	if n != 1 || err != nil || events[0].Fd != int32(fd) {
		t.Fatalf("SpinPoll after a write = %d, %v (fd %d); want the socket's event", n, err, events[0].Fd)
	}
	if n, err := Read(fd, buf); n != 4 || err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %d, %v, %q; want ping", n, err, buf[:max(n, 0)])
	}
	if n, err := Write(fd, []byte("pong")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 4)
	if _, err := peer.Read(got); err != nil || string(got) != "pong" {
		t.Fatalf("the peer read %q, %v; want pong", got, err)
	}
	peer.Close()
	if _, err := SpinPoll(epfd, events, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := Read(fd, buf); n != 0 || err != nil {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, nil", n, err)
	}
}

// TestPoller hands items to a Poller from another goroutine while its owner
// waits in Go's poller (File), drains them, and closes it with one item left.
func TestPoller(t *testing.T) {
	p, err := NewPoller[int]()
	if err != nil {
		t.Fatal(err)
	}
	f, raw, err := p.File()
	if err != nil {
		t.Fatal(err)
	}
	events := make([]syscall.EpollEvent, 4)
	var n int
	poll := func(uintptr) bool {
		n, err = PollNow(p.FD, events)
		return n != 0 || err != nil
	}
	f.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if werr := raw.Read(poll); werr == nil || n != 0 {
		t.Fatalf("wait with nothing handed = %v, %d events; want the deadline", werr, n)
	}
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() {
		time.Sleep(10 * time.Millisecond)
		p.Hand(1)
		p.Hand(2)
	}()
	if werr := raw.Read(poll); werr != nil || err != nil || n != 1 || !p.IsWake(events[0].Fd) {
		t.Fatalf("wait for a hand-over = %v, %v, %d events; want the wake pipe's", werr, err, n)
	}
	time.Sleep(20 * time.Millisecond) // the second Hand
	if got := p.Drain(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("Drain = %v, want [1 2]", got)
	}
	if n, _ := PollNow(p.FD, events); n != 0 {
		t.Fatalf("%d events after Drain, want 0", n)
	}
	p.Hand(3)
	if left := p.Close(); len(left) != 1 || left[0] != 3 {
		t.Fatalf("Close returned %v, want the undrained [3]", left)
	}
	if p.Hand(4) {
		t.Fatal("Hand after Close succeeded")
	}
}
