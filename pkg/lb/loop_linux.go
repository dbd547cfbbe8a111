//go:build linux

package lb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/httpwire"
	"github.com/scalestack/scalestack/internal/rawio"
)

// The event-loop transport. Each loop is one goroutine with an epoll
// instance that owns a share of the client connections and the backend
// connections their requests use, as an nginx worker or a HAProxy thread
// does. A request that the loop can carry from start to end costs the
// system calls it needs (read the request, write it to a backend, read the
// response, write it to the client) and no goroutine wake-up: the
// goroutine-per-connection transport (server.go) also pays for a read that
// finds nothing before each wait and for the runtime's threads waking each
// other (bench/lb/README.md measures both).
//
// The loop carries requests without a body whose response has none or a
// Content-Length: every GET, HEAD and DELETE, and nearly every response of
// the app. When a request has a body, or a response is chunked or ends at
// close, the loop hands the connection (and the backend connection, if the
// response is on its way) to a goroutine running the goroutine transport's
// code, which serves the connection from then on. Retries, budgets, health,
// stickiness, the path headers and the error pages are the same code in
// both transports.
//
// Sockets are registered once, edge-triggered, for reading and writing, so
// a request needs no epoll_ctl. A read that fills less than the buffer is
// taken to have drained the socket (new bytes bring a new edge), which
// spares the read that would return EAGAIN, unless the peer has closed its
// side (EPOLLRDHUP: its FIN may have come with the bytes, and will bring no
// edge of its own, so the loop reads on to the end of the stream, as nginx
// does with its pending_eof). rready remembers an edge that was not yet
// followed by a read, when the loop held back (a response in progress, or
// a client that cannot take more).

// Client connection states in a loop.
const (
	lsIdle  uint8 = iota // between requests
	lsHead               // part of a request head has arrived
	lsProxy              // connecting to, writing to or waiting for a backend
	lsBody               // forwarding a response body
	lsDone               // the response is whole; writing out what is left
)

const evAll = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | 1<<31 // 1<<31 is EPOLLET, negative in package syscall

// upBufSize is a backend connection's read buffer; a response head may grow
// it to maxResponseHead.
const (
	upBufSize       = 16 << 10
	maxResponseHead = 64 << 10
)

func eventLoopsSupported() bool { return true }

// loop is one event loop. Everything but p's inbox and force is touched
// only by its goroutine.
type loop struct {
	lb *LB
	// p is the epoll instance, its wake pipe and the inbox of accepted
	// connections; its file is in Go's own poller, which the loop waits on
	// when nothing is ready (see rawio.Poller.Run).
	p        *rawio.Poller[*lconn]
	force    atomic.Bool // close every connection, drained or not
	tick     time.Duration
	lastScan time.Time

	clients map[int32]*lconn
	ups     map[int32]*lup
	idle    map[*backend][]*lup // idle keep-alive connections, most recent last
	addrs   map[*backend]syscall.Sockaddr
}

// lconn is a client connection served by a loop, and the state of the
// request in progress on it (serveRequest's locals, kept across events).
type lconn struct {
	fd   int
	dead bool
	cc   clientConn // the request, its rewrite for the backend (cc.out) and cc.bw, which appends to out
	in   []byte     // bytes read from the client, in[r:w] not yet used
	r, w int
	out  []byte // bytes for the client, out[sent:] not yet written
	sent int

	state      uint8
	rready     bool  // a readable edge not yet drained
	hup        bool  // the client shut its side: reads end in EOF, not EAGAIN
	blocked    bool  // out waits for the socket to take more
	blockedAt  int64 // Unix ns: since when the client has taken none of out
	closeAfter bool
	since      int64 // Unix ns: when the state's timeout began

	start     time.Time
	exchange  // its way through the backends, as serveRequest's
	b         *backend
	t0        time.Time
	up        *lup
	remaining int64 // body bytes still to forward
}

// Write appends to the client's output; cc.bw writes here.
func (c *lconn) Write(p []byte) (int, error) {
	c.out = append(c.out, p...)
	return len(p), nil
}

// lup is a backend connection owned by a loop.
type lup struct {
	fd         int
	b          *backend
	c          *lconn // the client whose request it carries; nil when idle
	in         []byte
	r, w       int
	head       httpwire.Head
	sent       int // bytes of the request written
	got        int // bytes of the response read
	reused     bool
	connecting bool
	wblocked   bool
	rready     bool
	hup        bool // the backend closed (or reset) its side
	idleSince  int64
}

// startLoops starts cfg.EventLoops loops.
func (lb *LB) startLoops() error {
	for range lb.cfg.EventLoops {
		l, err := newLoop(lb)
		if err != nil {
			for _, o := range lb.loops {
				o.p.Close()
			}
			lb.loops = nil
			return err
		}
		lb.loops = append(lb.loops, l)
	}
	for _, l := range lb.loops {
		lb.wg.Add(1)
		go l.run()
	}
	return nil
}

func newLoop(lb *LB) (*loop, error) {
	p, err := rawio.NewPoller[*lconn]()
	if err != nil {
		return nil, err
	}
	if _, _, err := p.File(); err != nil {
		p.Close()
		return nil, err
	}
	return &loop{lb: lb, p: p,
		clients: map[int32]*lconn{}, ups: map[int32]*lup{},
		idle: map[*backend][]*lup{}, addrs: map[*backend]syscall.Sockaddr{}}, nil
}

// wakeLoops makes every loop look at the balancer's state (closing: close
// idle connections; force: close all).
func (lb *LB) wakeLoops(force bool) {
	for _, l := range lb.loops {
		if force {
			l.force.Store(true)
		}
		l.p.Wake()
	}
}

// handToLoop passes an accepted connection to the next loop. The socket is
// duplicated and nc closed, which takes it out of Go's poller.
func (lb *LB) handToLoop(nc net.Conn) {
	fd, err := rawio.TakeFD(nc)
	if err != nil {
		lb.log.Warn("lb: take over connection", "err", err)
		nc.Close()
		lb.freeSlot()
		return
	}
	c := &lconn{fd: fd, in: make([]byte, clientBufSize)}
	c.cc.lb = lb
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.cc.ip = a.AddrPort().Addr().Unmap().AppendTo(nil)
	}
	c.cc.bw = bufio.NewWriterSize(c, 4<<10)
	nc.Close()
	lb.connMu.Lock()
	if lb.closing.Load() {
		lb.connMu.Unlock()
		syscall.Close(fd)
		lb.freeSlot()
		return
	}
	lb.connOpened()
	lb.connMu.Unlock()
	l := lb.loops[lb.nextLoop%uint64(len(lb.loops))]
	lb.nextLoop++
	if !l.p.Hand(c) {
		syscall.Close(fd)
		lb.connClosed()
	}
}

// scanInterval is how often a loop looks for connections past a timeout:
// a quarter of the shortest one, at most 100ms.
func (lb *LB) scanInterval() time.Duration {
	d := 100 * time.Millisecond
	c := &lb.cfg
	for _, t := range []time.Duration{c.IdleTimeout, c.ReadHeaderTimeout, c.DialTimeout, c.ResponseHeaderTimeout, c.WriteTimeout} {
		if t > 0 && t/4 < d {
			d = max(t/4, time.Millisecond)
		}
	}
	return d
}

// run is the loop's goroutine. It returns when the balancer's context ends,
// after closing every connection it owns.
func (l *loop) run() {
	defer l.lb.wg.Done()
	defer l.shutdown()
	l.tick, l.lastScan = l.lb.scanInterval(), time.Now()
	if err := l.p.Run(l.lb.ctx, l, rawio.RunConfig{}); err != nil {
		l.lb.log.Error("lb event loop", "err", err)
	}
}

// Event dispatches the events of a backend or a client connection.
func (l *loop) Event(fd int32, events uint32) {
	if up := l.ups[fd]; up != nil {
		l.upEvent(up, events)
	} else if c := l.clients[fd]; c != nil {
		l.clientEvent(c, events)
	}
}

// Tick scans for timeouts every tick.
func (l *loop) Tick(now time.Time) time.Time {
	if now.Sub(l.lastScan) >= l.tick {
		l.lastScan = now
		l.scan(now)
	}
	return l.lastScan.Add(l.tick)
}

// Woken registers the connections handed to the loop, and looks at the
// balancer's state (closing: close idle connections; force: close all).
func (l *loop) Woken(incoming []*lconn) {
	now := time.Now().UnixNano()
	for _, c := range incoming {
		if err := l.p.Add(c.fd, evAll); err != nil {
			l.lb.log.Warn("lb event loop: epoll_ctl add", "err", err)
			syscall.Close(c.fd)
			l.lb.connClosed()
			continue
		}
		c.since = now
		l.clients[int32(c.fd)] = c
	}
	if l.force.Load() {
		for _, c := range l.clients {
			l.close(c)
		}
	} else if l.lb.closing.Load() {
		l.scan(time.Now())
	}
}

// scan closes connections past their timeouts, fails requests whose backend
// is past its, and, while the balancer drains, closes idle connections.
func (l *loop) scan(now time.Time) {
	t := now.UnixNano()
	cfg := &l.lb.cfg
	closing := l.lb.closing.Load()
	for _, c := range l.clients {
		switch c.state {
		case lsIdle:
			if (closing && c.r == c.w) || (cfg.IdleTimeout > 0 && t-c.since > int64(cfg.IdleTimeout)) {
				l.close(c)
				continue
			}
		case lsHead:
			if t-c.since > int64(cfg.ReadHeaderTimeout) {
				l.close(c)
				continue
			}
		case lsProxy:
			switch up := c.up; {
			case up.connecting && t-c.since > int64(cfg.DialTimeout):
				l.dialFailed(c, errDialTimeout)
			case !up.connecting && t-c.since > int64(cfg.ResponseHeaderTimeout):
				// From the end of the send, or from its start while the
				// backend takes no more of the request.
				l.responseFailed(c, errResponseTimeout)
			}
		}
		if !c.dead && c.blocked && cfg.WriteTimeout > 0 && t-c.blockedAt > int64(cfg.WriteTimeout) {
			l.lb.clientGone.Add(1)
			l.close(c)
		}
	}
	for b, idle := range l.idle {
		if b.pool.isClosed() {
			for _, up := range idle {
				l.closeUp(up)
			}
			delete(l.idle, b)
		}
	}
}

// timeoutError is a timeout the loop noticed; it reads as a net.Error.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var (
	errDialTimeout     net.Error = timeoutError("dial timeout")
	errResponseTimeout net.Error = timeoutError("timeout awaiting response headers")
)

func (l *loop) clientEvent(c *lconn, evs uint32) {
	if evs&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
		if c.state == lsProxy || c.state == lsBody {
			l.lb.clientGone.Add(1)
		}
		l.close(c)
		return
	}
	if evs&syscall.EPOLLOUT != 0 && c.blocked {
		if !l.flush(c) {
			return
		}
		l.advance(c)
		if c.dead {
			return
		}
	}
	if evs&syscall.EPOLLRDHUP != 0 {
		c.hup = true
	}
	if evs&(syscall.EPOLLIN|syscall.EPOLLRDHUP) != 0 {
		c.rready = true
		if c.state <= lsHead && !c.blocked {
			l.readClient(c)
		}
	}
}

// readClient reads from the client until a request is under way, the socket
// is drained or the connection closes.
func (l *loop) readClient(c *lconn) {
	maxIn := l.lb.cfg.MaxHeaderBytes + clientBufSize
	for c.rready && c.state <= lsHead && !c.dead {
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		var ok bool
		if c.in, c.r, c.w, ok = makeRoom(c.in, c.r, c.w, maxIn); !ok {
			l.badRequest(c, httpwire.ErrHeadTooLarge)
			return
		}
		room := len(c.in) - c.w
		n, err := rawio.Read(c.fd, c.in[c.w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			c.rready = false
			return
		}
		if n <= 0 {
			// The client closed or reset the connection; a part of a
			// head left unsent has nobody to answer.
			l.close(c)
			return
		}
		c.w += n
		if n < room && !c.hup {
			c.rready = false
		}
		l.parseRequest(c)
	}
}

// makeRoom makes space to read into after buf[r:w], the bytes not yet
// used: it moves them to the front, or grows buf up to limit. It reports
// false when buf is full of unused bytes at limit.
func makeRoom(buf []byte, r, w, limit int) ([]byte, int, int, bool) {
	switch {
	case w < len(buf):
	case r > 0:
		w = copy(buf, buf[r:w])
		r = 0
	case len(buf) < limit:
		grown := make([]byte, min(2*len(buf), limit))
		copy(grown, buf[:w])
		buf = grown
	default:
		return buf, r, w, false
	}
	return buf, r, w, true
}

// parseRequest starts the request buffered in c.in, if it is all there.
func (l *loop) parseRequest(c *lconn) {
	n, err := httpwire.ParseHead(c.in[c.r:c.w], &c.cc.req, l.lb.cfg.MaxHeaderBytes, clientBufSize, false)
	if err != nil {
		l.badRequest(c, err)
		return
	}
	if n == 0 {
		if c.state == lsIdle && c.r < c.w {
			c.state = lsHead
			c.since = time.Now().UnixNano()
		}
		return
	}
	c.r += n
	if req := &c.cc.req; req.Chunked || req.ContentLength > 0 {
		l.handOff(c)
		return
	}
	l.beginProxy(c)
}

func (l *loop) badRequest(c *lconn, err error) {
	c.cc.badRequest(err)
	c.closeAfter = true
	c.state = lsDone
	if l.flush(c) {
		l.finish(c)
	}
}

// beginProxy sets up the request in c.cc.req and makes its first attempt:
// serveRequest's opening, for a request without a body.
func (l *loop) beginProxy(c *lconn) {
	lb := l.lb
	cc := &c.cc
	r := &cc.req
	c.start = time.Now()
	lb.requests.Add(1)
	lb.budget.Request(c.start)
	ids := cc.buildRequest()
	c.exchange.start(lb, r, ids.reqID(cc.out), ids.traceID(cc.out))
	c.state = lsProxy
	l.attempt(c)
}

// attempt sends the request to the next backend, as serveRequest's loop
// does; it returns once the request is on its way (or answered).
func (l *loop) attempt(c *lconn) {
	lb := l.lb
	for {
		b, fresh := c.next(lb)
		if b == nil {
			l.giveUp(c)
			return
		}
		b.inflight.Add(1)
		b.requests.Add(1)
		c.b = b
		c.t0 = time.Now()
		up, err := l.acquire(b, !c.idempotent, fresh, c.t0)
		if err != nil {
			b.inflight.Add(-1)
			b.errors.Add(1)
			lb.passiveError(b)
			c.lastFail = failDial
			lb.log.Debug("lb connect failed", "backend", b.name, "request_id", string(c.reqID), "trace_id", string(c.traceID), "err", err)
			continue // nothing was sent: any request may go elsewhere
		}
		c.up, up.c = up, c
		up.sent, up.got, up.r, up.w = 0, 0, 0, 0
		c.since = c.t0.UnixNano()
		if !up.connecting {
			l.send(c)
		}
		return
	}
}

// acquire returns a connection to b: an idle one of this loop's that is
// still open, or a new one, maybe still connecting.
func (l *loop) acquire(b *backend, careful, fresh bool, now time.Time) (*lup, error) {
	for !fresh {
		idle := l.idle[b]
		if len(idle) == 0 {
			break
		}
		up := idle[len(idle)-1]
		idle[len(idle)-1] = nil
		l.idle[b] = idle[:len(idle)-1]
		if (careful || now.UnixNano()-up.idleSince > int64(staleAfter)) && !fdAlive(up.fd) {
			l.closeUp(up)
			continue
		}
		up.reused = true
		return up, nil
	}
	sa := l.addrs[b]
	if sa == nil {
		a, err := net.ResolveTCPAddr("tcp", b.addr)
		if err != nil {
			return nil, err
		}
		if ip4 := a.IP.To4(); ip4 != nil {
			sa4 := &syscall.SockaddrInet4{Port: a.Port}
			copy(sa4.Addr[:], ip4)
			sa = sa4
		} else {
			sa6 := &syscall.SockaddrInet6{Port: a.Port}
			copy(sa6.Addr[:], a.IP.To16())
			sa = sa6
		}
		l.addrs[b] = sa
	}
	family := syscall.AF_INET
	if _, ok := sa.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	connecting := false
	if err := syscall.Connect(fd, sa); err == syscall.EINPROGRESS {
		connecting = true
	} else if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("dial %s: %w", b.addr, err)
	}
	if err := l.p.Add(fd, evAll); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("epoll_ctl add: %w", err)
	}
	up := &lup{fd: fd, b: b, connecting: connecting, in: make([]byte, upBufSize)}
	l.ups[int32(fd)] = up
	return up, nil
}

// fdAlive is connAlive for a socket the loop owns.
func fdAlive(fd int) bool {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(fd, buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN
}

func (l *loop) closeUp(up *lup) {
	if l.ups[int32(up.fd)] == up {
		delete(l.ups, int32(up.fd))
	}
	syscall.Close(up.fd) // which also takes it out of the epoll set
	up.c = nil
}

// upEvent handles readiness of a backend connection.
func (l *loop) upEvent(up *lup, evs uint32) {
	c := up.c
	if c == nil {
		// Idle: the backend closed it (its keep-alive timeout, a restart)
		// or sent something unasked; either way it is done.
		if evs&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			l.dropIdle(up)
		}
		return
	}
	if up.connecting {
		if evs&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		soerr, err := syscall.GetsockoptInt(up.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		switch {
		case err != nil:
			l.dialFailed(c, err)
		case soerr != 0:
			l.dialFailed(c, syscall.Errno(soerr))
		default:
			up.connecting = false
			l.send(c)
		}
		return
	}
	if evs&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		up.hup = true
	}
	if evs&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		up.rready = true
	}
	if evs&syscall.EPOLLOUT != 0 && up.wblocked {
		l.send(c)
		if c.up != up {
			return
		}
	}
	if up.rready && !up.wblocked {
		switch c.state {
		case lsProxy:
			l.readResponse(c)
		case lsBody:
			if !c.blocked {
				l.pumpBody(c)
			}
		}
	}
}

func (l *loop) dropIdle(up *lup) {
	idle := l.idle[up.b]
	for i, x := range idle {
		if x == up {
			copy(idle[i:], idle[i+1:])
			idle[len(idle)-1] = nil
			l.idle[up.b] = idle[:len(idle)-1]
			break
		}
	}
	l.closeUp(up)
}

// send writes the request to the backend (the rest of it, after the socket
// was full).
func (l *loop) send(c *lconn) {
	up := c.up
	out := c.cc.out
	for up.sent < len(out) {
		n, err := rawio.Write(up.fd, out[up.sent:])
		if n > 0 {
			up.sent += n
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			up.wblocked = true
			return
		}
		l.sendFailed(c, err)
		return
	}
	up.wblocked = false
	c.since = time.Now().UnixNano() // the response-header timeout starts
	if up.rready {
		l.readResponse(c)
	}
}

// detach takes the backend connection away from c, closes it and ends the
// attempt's in-flight count.
func (l *loop) detach(c *lconn) *lup {
	up := c.up
	c.up = nil
	l.closeUp(up)
	c.b.inflight.Add(-1)
	return up
}

func (l *loop) dialFailed(c *lconn, err error) {
	l.detach(c)
	c.b.errors.Add(1)
	l.lb.passiveError(c.b)
	c.lastFail = failDial
	l.lb.log.Debug("lb connect failed", "backend", c.b.name, "request_id", string(c.reqID), "trace_id", string(c.traceID), "err", err)
	l.attempt(c)
}

// sendFailed is serveRequest's handling of a failed send.
func (l *loop) sendFailed(c *lconn, err error) {
	up := l.detach(c)
	b := c.b
	l.lb.log.Debug("lb send failed", "backend", b.name, "request_id", string(c.reqID), "trace_id", string(c.traceID), "written", up.sent, "reused", up.reused, "err", err)
	if up.reused && up.sent == 0 {
		c.again = b // a dead idle connection: nothing was sent
		l.attempt(c)
		return
	}
	b.errors.Add(1)
	l.lb.passiveError(b)
	if up.sent == 0 {
		c.lastFail = failDial
		l.attempt(c)
		return
	}
	c.allDial = false
	c.lastFail = failOther
	if c.idempotent {
		l.attempt(c)
		return
	}
	l.giveUp(c)
}

// responseFailed is serveRequest's handling of a response head that did
// not come.
func (l *loop) responseFailed(c *lconn, err error) {
	c.allDial = false
	up := l.detach(c)
	b := c.b
	if up.reused && up.got == 0 && c.idempotent && closedByPeer(err) {
		// The backend closed a kept-alive connection as the request
		// went out (its idle timeout, or a graceful restart).
		c.again = b
		l.attempt(c)
		return
	}
	b.errors.Add(1)
	l.lb.passiveError(b)
	c.lastFail = failOther
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.lastFail = failTimeout
	}
	l.lb.log.Debug("lb response failed", "backend", b.name, "request_id", string(c.reqID), "trace_id", string(c.traceID), "reused", up.reused, "err", err)
	// The request reached the node and may have been applied: only an
	// idempotent one is retried.
	if c.idempotent {
		l.attempt(c)
		return
	}
	l.giveUp(c)
}

// readResponse reads the response head, skipping interim 1xx responses.
func (l *loop) readResponse(c *lconn) {
	up := c.up
	for {
		var ok bool
		if up.in, up.r, up.w, ok = makeRoom(up.in, up.r, up.w, maxResponseHead+upBufSize); !ok {
			l.responseFailed(c, httpwire.ErrHeadTooLarge)
			return
		}
		room := len(up.in) - up.w
		n, err := rawio.Read(up.fd, up.in[up.w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			up.rready = false
			return
		}
		if n == 0 {
			err = io.EOF
		}
		if err != nil {
			if up.got > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			l.responseFailed(c, err)
			return
		}
		up.w += n
		up.got += n
		if n < room && !up.hup {
			up.rready = false
		}
		for {
			k, err := httpwire.ParseHead(up.in[up.r:up.w], &up.head, maxResponseHead, upBufSize, true)
			if err != nil {
				l.responseFailed(c, err)
				return
			}
			if k == 0 {
				break
			}
			up.r += k
			if s := up.head.Status; s >= 200 {
				l.gotResponse(c)
				return
			} else if s == 101 {
				l.responseFailed(c, errors.New("backend switched protocols"))
				return
			}
		}
		if !up.rready {
			return
		}
	}
}

// gotResponse passes on a response head: serveRequest's part after
// readResponseHead.
func (l *loop) gotResponse(c *lconn) {
	lb := l.lb
	up, b := c.up, c.b
	h := &up.head
	status := h.Status
	lb.passiveResponse(b, h)
	if lb.cfg.RetryOnGatewayError && isGatewayError(status) && c.idempotent &&
		c.n < c.attempts && lb.hasUntried(c.pool, c.tried[:c.n]) && lb.budget.Allow(time.Now()) {
		l.detach(c)
		b.observe(time.Since(c.t0))
		c.budgeted = true
		l.attempt(c)
		return
	}
	if !httpwire.Bodyless(c.isHead, status) && (h.Chunked || h.ContentLength < 0) {
		l.handOff(c)
		return
	}
	_, c.closeAfter = c.cc.writeResponseHead(h, b, c.reqID, c.isHead)
	_ = c.cc.bw.Flush()
	c.remaining = 0
	if !httpwire.Bodyless(c.isHead, status) {
		c.remaining = h.ContentLength
	}
	c.state = lsBody
	l.pumpBody(c)
}

// pumpBody forwards the response body from the backend to the client as
// fast as the client takes it.
func (l *loop) pumpBody(c *lconn) {
	up := c.up
	for {
		if c.remaining > 0 && up.r < up.w {
			k := int(min(int64(up.w-up.r), c.remaining))
			c.out = append(c.out, up.in[up.r:up.r+k]...)
			up.r += k
			c.remaining -= int64(k)
		}
		if c.remaining == 0 {
			l.responseDone(c)
			return
		}
		if !l.flush(c) || !up.rready {
			return // the client's EPOLLOUT or the backend's EPOLLIN resumes
		}
		up.r, up.w = 0, 0
		room := len(up.in)
		n, err := rawio.Read(up.fd, up.in)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			up.rready = false
			return
		}
		if n <= 0 {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			l.bodyCut(c, err)
			return
		}
		up.w = n
		if n < room && !up.hup {
			up.rready = false
		}
	}
}

// bodyCut ends a response whose backend broke mid-body. The client must not
// take a short body for a whole one: its connection is closed without the
// rest.
func (l *loop) bodyCut(c *lconn, err error) {
	b := c.b
	l.detach(c)
	b.errors.Add(1)
	l.lb.passiveError(b)
	b.observe(time.Since(c.t0))
	l.lb.log.Warn("lb response body cut", "backend", b.name, "request_id", string(c.reqID), "trace_id", string(c.traceID), "err", err)
	c.closeAfter = true
	c.state = lsDone
	if l.flush(c) {
		l.finish(c)
	}
}

// responseDone keeps the backend connection for the next request, if it
// can carry one, and finishes the client's side.
func (l *loop) responseDone(c *lconn) {
	up, b := c.up, c.b
	c.up = nil
	h := &up.head
	if h.Close || (h.HTTP10 && !h.KeepAlive) || up.r < up.w || up.rready ||
		b.pool.isClosed() || len(l.idle[b]) >= l.lb.cfg.MaxIdleConns {
		l.closeUp(up)
	} else {
		up.c = nil
		up.idleSince = time.Now().UnixNano()
		l.idle[b] = append(l.idle[b], up)
	}
	b.inflight.Add(-1)
	b.observe(time.Since(c.t0))
	c.state = lsDone
	if l.flush(c) {
		l.finish(c)
	}
}

// giveUp answers a request no backend could: serveRequest's ending.
func (l *loop) giveUp(c *lconn) {
	lb := l.lb
	r := &c.cc.req
	keep := !lb.closing.Load() && !r.Close && !(r.HTTP10 && !r.KeepAlive)
	switch {
	case c.n == 0 || (c.allDial && c.lastFail == failDial):
		lb.failed[1].Add(1)
		c.cc.writePage(503, "no app node is available", c.reqID, c.traceID, !keep, c.isHead)
	case c.lastFail == failTimeout:
		lb.failed[2].Add(1)
		c.cc.writePage(504, "the app node did not answer in time", c.reqID, c.traceID, !keep, c.isHead)
	default:
		lb.failed[0].Add(1)
		c.cc.writePage(502, "the app node failed to answer", c.reqID, c.traceID, !keep, c.isHead)
	}
	_ = c.cc.bw.Flush()
	c.closeAfter = !keep
	c.state = lsDone
	if l.flush(c) {
		l.finish(c)
	}
}

// flush writes out what is waiting for the client. It reports whether all
// of it went; when not, the client's EPOLLOUT resumes (or c was closed).
func (l *loop) flush(c *lconn) bool {
	progress := false
	for c.sent < len(c.out) {
		n, err := rawio.Write(c.fd, c.out[c.sent:])
		if n > 0 {
			c.sent += n
			progress = true
			continue
		}
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			// WriteTimeout counts from the client's last progress.
			if !c.blocked || progress {
				c.blockedAt = time.Now().UnixNano()
			}
			c.blocked = true
			return false
		}
		if c.state == lsBody || c.state == lsDone {
			l.lb.clientGone.Add(1)
		}
		l.close(c)
		return false
	}
	c.out = c.out[:0]
	c.sent = 0
	c.blocked = false
	return true
}

// advance goes on after the client took all that was waiting.
func (l *loop) advance(c *lconn) {
	switch c.state {
	case lsBody:
		if c.up.rready || c.remaining == 0 || c.up.r < c.up.w {
			l.pumpBody(c)
		}
	case lsDone:
		l.finish(c)
	}
}

// finish ends a request whose response went out whole, and starts the next
// one if the client sent it already.
func (l *loop) finish(c *lconn) {
	if c.closeAfter || l.lb.closing.Load() {
		l.close(c)
		return
	}
	c.state = lsIdle
	c.since = time.Now().UnixNano()
	c.reqID, c.traceID, c.cookies, c.pool, c.b = nil, nil, nil, nil, nil
	clear(c.tried[:c.n])
	if c.r < c.w {
		l.parseRequest(c)
	}
	if !c.dead && c.state <= lsHead && c.rready {
		l.readClient(c)
	}
}

// close closes a client connection and whatever backend connection its
// request held.
func (l *loop) close(c *lconn) {
	if c.dead {
		return
	}
	c.dead = true
	if c.up != nil {
		l.detach(c)
	}
	delete(l.clients, int32(c.fd))
	syscall.Close(c.fd)
	l.lb.connClosed()
}

// handOff gives the connection (and the backend connection of a response
// under way) to a goroutine running the goroutine transport, which serves it
// from then on. Bytes the loop read but did not use go with each.
func (l *loop) handOff(c *lconn) {
	lb := l.lb
	lb.handOffs.Add(1)
	delete(l.clients, int32(c.fd))
	c.dead = true // to this loop
	nc, err := fdConn(l.p.FD, c.fd, c.in[c.r:c.w])
	if err != nil {
		lb.log.Warn("lb: hand connection to a goroutine", "err", err)
		if c.up != nil {
			l.detach(c)
		}
		lb.connClosed()
		return
	}
	cc := &clientConn{lb: lb, nc: nc, req: c.cc.req, out: c.cc.out, ip: c.cc.ip}
	cc.br = bufio.NewReaderSize(nc, clientBufSize)
	cc.bw = bufio.NewWriterSize(newStallWriter(nc, newRawWriter(nc.Conn), lb.cfg.WriteTimeout), clientBufSize)
	cc.state.Store(connActive)
	var first func() bool
	if up := c.up; up == nil {
		first = func() bool {
			now := time.Now()
			if t := lb.cfg.ReadTimeout; t > 0 {
				_ = nc.SetReadDeadline(now.Add(t))
			}
			return cc.serveRequest(now)
		}
	} else {
		delete(l.ups, int32(up.fd))
		c.up = nil
		unc, err := fdConn(l.p.FD, up.fd, up.in[up.r:up.w])
		if err != nil {
			lb.log.Warn("lb: hand backend connection to a goroutine", "err", err)
			c.b.inflight.Add(-1)
			_ = nc.Close()
			lb.connClosed()
			return
		}
		uc := &upConn{nc: unc, w: newRawWriter(unc.Conn), head: up.head, reused: up.reused}
		uc.br = bufio.NewReaderSize(unc, upBufSize)
		uc.bw = bufio.NewWriterSize(uc, upBufSize)
		b, reqID, traceID, isHead, t0 := c.b, c.reqID, c.traceID, c.isHead, c.t0
		first = func() bool {
			keep := cc.writeResponse(uc, b, reqID, traceID, isHead)
			b.inflight.Add(-1)
			b.observe(time.Since(t0))
			return keep
		}
	}
	lb.connMu.Lock()
	lb.conns[cc] = struct{}{}
	lb.connMu.Unlock()
	go cc.serve(first)
}

// fdConn turns a socket the loop owns into a net.Conn served by Go's
// poller: it leaves the loop's epoll set, is duplicated into the net.Conn,
// and the loop's descriptor is closed. pending are bytes already read from
// it, which the net.Conn's reads return first.
func fdConn(epfd, fd int, pending []byte) (*prefixConn, error) {
	_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	f := os.NewFile(uintptr(fd), "lb-conn")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return &prefixConn{Conn: nc, pending: append([]byte(nil), pending...)}, nil
}

// shutdown closes every connection the loop owns; the balancer's context
// has ended.
func (l *loop) shutdown() {
	for _, c := range l.p.Close() {
		syscall.Close(c.fd)
		l.lb.connClosed()
	}
	for _, c := range l.clients {
		l.close(c)
	}
	for _, up := range l.ups {
		l.closeUp(up)
	}
}
