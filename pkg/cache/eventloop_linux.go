//go:build linux

package cache

import (
	"net"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/accept"
	"github.com/scalestack/scalestack/internal/rawio"
)

// The event-loop transport serves many connections from one goroutine per
// loop, as Redis serves all of its from one thread: epoll reports which
// sockets are readable, and the loop reads each once, executes what
// arrived and writes the replies straight back. Compared with a goroutine
// per connection, a request costs no goroutine park and wake-up, no
// read(2) that fails with EAGAIN before parking, and no hand-off between
// threads; on a machine where the clients share the cores, that CPU goes to
// them. Sockets are level-triggered, so a socket with bytes left to read is
// simply reported again.

// eventLoop owns an epoll instance and the connections registered in it.
// Only its own goroutine touches those connections.
type eventLoop struct {
	s *Server
	// p is the epoll instance, its wake pipe and the inbox of accepted
	// connections waiting to be registered.
	p     *rawio.Poller[*conn]
	conns map[int32]*conn
	// held are connections whose reply to a wrong AUTH waits until their
	// holdUntil; they are not read meanwhile.
	held []*conn
	// scanEvery is how often the loop looks for connections past the idle
	// or authentication timeout (0: never); lastScan is when it last did.
	scanEvery time.Duration
	lastScan  time.Time
}

const (
	evRead  = syscall.EPOLLIN | syscall.EPOLLRDHUP
	evWrite = syscall.EPOLLOUT | syscall.EPOLLRDHUP
)

func eventLoopsSupported() bool { return true }

func newEventLoop(s *Server) (*eventLoop, error) {
	p, err := rawio.NewPoller[*conn]()
	if err != nil {
		return nil, err
	}
	return &eventLoop{s: s, p: p, conns: make(map[int32]*conn)}, nil
}

func (l *eventLoop) wake() { l.p.Wake() }

// closeFDs closes a loop that never ran.
func (l *eventLoop) closeFDs() { l.p.Close() }

// hand passes an accepted connection to the loop; it is closed at once if
// the loop has stopped.
func (l *eventLoop) hand(c *conn) {
	if !l.p.Hand(c) {
		syscall.Close(c.fd)
		l.s.connsOpen.Add(-1)
	}
}

// run is the loop's goroutine; it returns when the server closes, after
// closing every connection it owns.
func (l *eventLoop) run() {
	defer l.s.wg.Done()
	defer l.shutdown()
	// With an idle or authentication timeout, wake at least every half of
	// the shorter one (at most every second) to close the connections past
	// it.
	for _, t := range []time.Duration{l.s.cfg.IdleTimeout, l.authTimeout()} {
		if t > 0 && (l.scanEvery == 0 || t/2 < l.scanEvery) {
			l.scanEvery = min(t/2, time.Second)
		}
	}
	l.lastScan = time.Now()
	// When nothing is ready the loop polls on for up to BusyPoll, and only
	// then blocks in epoll_wait.
	if err := l.p.Run(l.s.ctx, l, rawio.RunConfig{Spin: l.s.cfg.BusyPoll}); err != nil {
		l.s.log.Error("cache event loop", "err", err)
	}
}

// Event reads from or writes to a connection.
func (l *eventLoop) Event(fd int32, events uint32) {
	c := l.conns[fd]
	if c == nil {
		return
	}
	if c.holdUntil != 0 {
		// Not read until its hold ends; a hang-up cannot be masked.
		if events&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			l.close(c)
		}
		return
	}
	switch {
	case events&syscall.EPOLLOUT != 0:
		l.writable(c)
	case events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0:
		l.readable(c)
	}
}

// Tick releases the held connections that are due and closes those past a
// timeout; it returns when the next of either is due.
func (l *eventLoop) Tick(now time.Time) time.Time {
	if len(l.held) > 0 {
		l.release(now.UnixNano())
	}
	var due time.Time
	if l.scanEvery > 0 {
		if now.Sub(l.lastScan) >= l.scanEvery {
			l.lastScan = now
			l.closeExpired(now)
		}
		due = l.lastScan.Add(l.scanEvery)
	}
	for _, c := range l.held {
		if t := time.Unix(0, c.holdUntil); due.IsZero() || t.Before(due) {
			due = t
		}
	}
	return due
}

// authTimeout is Config.AuthTimeout when the server has a password.
func (l *eventLoop) authTimeout() time.Duration {
	if l.s.cfg.Password == "" {
		return 0
	}
	return l.s.cfg.AuthTimeout
}

// hold stops reading c until its holdUntil; release then sends its
// replies and goes on with what it had sent.
func (l *eventLoop) hold(c *conn) {
	l.setEvents(c, 0)
	l.held = append(l.held, c)
}

// release resumes the held connections that are due.
func (l *eventLoop) release(now int64) {
	var due []*conn
	rest := l.held[:0]
	for _, c := range l.held {
		switch {
		case l.conns[int32(c.fd)] != c:
			// closed meanwhile
		case c.holdUntil <= now:
			due = append(due, c)
		default:
			rest = append(rest, c)
		}
	}
	clear(l.held[len(rest):])
	l.held = rest
	for _, c := range due {
		c.holdUntil = 0
		l.setEvents(c, evRead)
		if !l.writeOut(c) {
			continue
		}
		if c.quit {
			l.close(c)
			continue
		}
		l.process(c)
	}
}

// Woken registers the connections handed to the loop.
func (l *eventLoop) Woken(incoming []*conn) {
	for _, c := range incoming {
		if err := l.p.Add(c.fd, evRead); err != nil {
			l.s.log.Warn("cache event loop: epoll_ctl add", "err", err)
			syscall.Close(c.fd)
			l.s.connsOpen.Add(-1)
			continue
		}
		c.now = time.Now().UnixNano()
		l.conns[int32(c.fd)] = c
	}
}

// readable reads once from c and executes what arrived.
func (l *eventLoop) readable(c *conn) {
	buf, err := c.room()
	if err != nil {
		c.protocolError(err)
		l.writeOut(c)
		l.close(c)
		return
	}
	n, err := rawio.Read(c.fd, buf)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		if err != nil && err != syscall.ECONNRESET {
			l.s.log.Debug("cache connection closed", "conn", c.id, "err", err)
		}
		l.close(c)
		return
	}
	c.w += n
	c.now = time.Now().UnixNano()
	l.process(c)
}

// process executes c's buffered requests and writes the replies, until
// nothing complete is left or the socket will take no more.
func (l *eventLoop) process(c *conn) {
	for {
		n, more, err := c.executeBuffered()
		l.s.commands.Add(uint64(n))
		if err != nil {
			c.protocolError(err)
			l.writeOut(c)
			l.close(c)
			return
		}
		if c.holdUntil != 0 {
			l.hold(c)
			return
		}
		if !l.writeOut(c) {
			return // blocked (writable resumes) or closed
		}
		if c.quit {
			l.close(c)
			return
		}
		if !more {
			return
		}
	}
}

// writeOut writes c.out. It reports true when all of it was written; false
// when c was closed, or the socket is full, in which case the loop stops
// reading c and waits for it to become writable.
func (l *eventLoop) writeOut(c *conn) bool {
	for c.sent < len(c.out) {
		n, err := rawio.Write(c.fd, c.out[c.sent:])
		if n > 0 {
			c.sent += n
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !c.blocked {
				c.blocked = true
				l.setEvents(c, evWrite)
			}
			return false
		}
		l.close(c)
		return false
	}
	c.sent = 0
	c.resetOut()
	if c.blocked {
		c.blocked = false
		l.setEvents(c, evRead)
	}
	return true
}

func (l *eventLoop) writable(c *conn) {
	if !l.writeOut(c) {
		return
	}
	if c.quit {
		l.close(c)
		return
	}
	l.process(c) // requests that waited in rbuf while the socket was full
}

func (l *eventLoop) setEvents(c *conn, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.p.FD, syscall.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		l.s.log.Warn("cache event loop: epoll_ctl mod", "err", err)
	}
}

func (l *eventLoop) close(c *conn) {
	if _, ok := l.conns[int32(c.fd)]; !ok {
		return
	}
	delete(l.conns, int32(c.fd))
	syscall.EpollCtl(l.p.FD, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	l.s.connsOpen.Add(-1)
}

// closeExpired closes connections that sent nothing for IdleTimeout, and
// those that did not authenticate within AuthTimeout.
func (l *eventLoop) closeExpired(now time.Time) {
	t := now.UnixNano()
	for _, c := range l.conns {
		if d := c.readDeadline(c.now); d != 0 && d < t {
			l.close(c)
		}
	}
}

func (l *eventLoop) shutdown() {
	for _, c := range l.p.Close() {
		syscall.Close(c.fd)
		l.s.connsOpen.Add(-1)
	}
	for _, c := range l.conns {
		l.close(c)
	}
}

// acceptRaw accepts connections on ln and deals them out to the loops in
// turn. Go's listener does the accepting (and its poller the waiting); each
// socket is then duplicated, and the loop serves the duplicate while the
// net.Conn is closed, which also takes the socket out of Go's poller.
func (s *Server) acceptRaw(ln net.Listener, loops []*eventLoop) {
	defer s.wg.Done()
	next := 0
	accept.Serve(s.ctx, ln, accept.Config{Log: s.log, Msg: "cache accept"}, func(nc net.Conn) {
		if s.refuseOverCap(nc) {
			return
		}
		fd, err := rawio.TakeFD(nc)
		if err != nil {
			s.log.Warn("cache: take over connection", "err", err)
			nc.Close()
			return
		}
		s.mu.Lock()
		s.nextID++
		c := newConn(s, s.nextID)
		s.mu.Unlock()
		c.fd, c.remote, c.local = fd, nc.RemoteAddr().String(), nc.LocalAddr().String()
		nc.Close()
		s.connsOpen.Add(1)
		s.connsTotal.Add(1)
		l := loops[next%len(loops)]
		next++
		c.loop = l
		l.hand(c)
	})
}
