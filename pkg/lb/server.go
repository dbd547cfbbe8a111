package lb

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/accept"
	"github.com/scalestack/scalestack/internal/httpwire"
)

// Client connection states, for graceful shutdown: only an idle connection
// (between requests) may be closed under a client's feet.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

const clientBufSize = 8 << 10

// clientConn is one client connection and the buffers it reuses from one
// request to the next.
type clientConn struct {
	lb    *LB
	nc    net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	req   httpwire.Head
	out   []byte // the request as it goes to a backend
	ip    []byte // the client's address, for X-Forwarded-For
	state atomic.Int32
}

// serveConns accepts connections until the listener closes. It takes a
// slot before each accept, so at MaxConns open connections it waits for
// one to close (connClosed gives its slot back).
func (lb *LB) serveConns(ln net.Listener) {
	cfg := accept.Config{Slots: lb.slots, Log: lb.log, Msg: "lb accept failed"}
	accept.Serve(lb.ctx, ln, cfg, lb.serveConn)
}

// serveConn starts serving a connection just accepted: in an event loop
// when there are some, else in a goroutine of its own.
func (lb *LB) serveConn(nc net.Conn) {
	if lb.loops != nil {
		lb.handToLoop(nc)
		return
	}
	cc := &clientConn{lb: lb, nc: nc}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.AddrPort().Addr().Unmap().AppendTo(nil)
	}
	lb.connMu.Lock()
	if lb.closing.Load() {
		lb.connMu.Unlock()
		nc.Close()
		lb.freeSlot()
		return
	}
	lb.conns[cc] = struct{}{}
	lb.connOpened()
	lb.connMu.Unlock()
	go cc.serve(nil)
}

// serve reads and proxies requests until the connection closes. first,
// when not nil, finishes a request an event loop began on this connection
// (see loop_linux.go) and reports whether the connection may carry another.
func (cc *clientConn) serve(first func() bool) {
	lb := cc.lb
	defer func() {
		cc.state.Store(connClosed)
		_ = cc.nc.Close()
		lb.connMu.Lock()
		delete(lb.conns, cc)
		lb.connMu.Unlock()
		lb.connClosed()
	}()
	// 8 KiB each way per client connection: a head line may be as long as
	// the reader (nginx's default limit too), and thousands of idle
	// connections stay cheap.
	if cc.br == nil {
		cc.br = bufio.NewReaderSize(cc.nc, clientBufSize)
		cc.bw = bufio.NewWriterSize(newStallWriter(cc.nc, newRawWriter(cc.nc), lb.cfg.WriteTimeout), clientBufSize)
	}
	if first != nil {
		keep := first()
		if err := cc.bw.Flush(); err != nil || !keep {
			return
		}
		cc.state.Store(connIdle)
	}
	cfg := &lb.cfg
	for {
		if cc.br.Buffered() == 0 {
			if lb.closing.Load() {
				return
			}
			if cfg.IdleTimeout > 0 {
				_ = cc.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
			} else {
				_ = cc.nc.SetReadDeadline(time.Time{})
			}
			if _, err := cc.br.Peek(1); err != nil {
				return
			}
		}
		if !cc.state.CompareAndSwap(connIdle, connActive) {
			return // closed by shutdown while idle
		}
		now := time.Now()
		_ = cc.nc.SetReadDeadline(now.Add(cfg.ReadHeaderTimeout))
		if err := httpwire.ReadHead(cc.br, &cc.req, cfg.MaxHeaderBytes, false); err != nil {
			cc.badRequest(err)
			return
		}
		if cfg.ReadTimeout > 0 {
			_ = cc.nc.SetReadDeadline(now.Add(cfg.ReadTimeout))
		} else {
			_ = cc.nc.SetReadDeadline(time.Time{})
		}
		keep := cc.serveRequest(now)
		if err := cc.bw.Flush(); err != nil || !keep {
			return
		}
		cc.state.Store(connIdle)
	}
}

// writeChunk is the most a stallWriter writes under one deadline: a client
// that takes at least this much per WriteTimeout is never cut.
const writeChunk = 256 << 10

// stallWriter writes to a client under Config.WriteTimeout as a bound on
// stalls: before a write it sets the connection's write deadline timeout
// ahead, when a quarter of it has passed since it was last set (a deadline
// costs a timer update, which a small response should not pay every time),
// and it writes at most writeChunk under one deadline. A write therefore
// has at least three quarters of the timeout to make progress.
type stallWriter struct {
	nc      net.Conn
	w       io.Writer
	timeout time.Duration
	armed   time.Time
}

func newStallWriter(nc net.Conn, w io.Writer, timeout time.Duration) io.Writer {
	if timeout <= 0 {
		return w
	}
	return &stallWriter{nc: nc, w: w, timeout: timeout}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), writeChunk)
		if now := time.Now(); now.Sub(s.armed) >= s.timeout/4 {
			s.armed = now
			_ = s.nc.SetWriteDeadline(now.Add(s.timeout))
		}
		m, err := s.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// badRequest answers a head that could not be read, when there is someone
// to answer.
func (cc *clientConn) badRequest(err error) {
	var ne net.Error
	if errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout()) || isEOF(err) {
		return
	}
	code, msg := 400, "malformed request"
	switch {
	case errors.Is(err, httpwire.ErrHeadTooLarge):
		code, msg = 431, "request header fields too large"
	case errors.Is(err, httpwire.ErrBadVersion):
		code, msg = 505, "HTTP version not supported"
	case errors.Is(err, httpwire.ErrBadCoding):
		code, msg = 501, "transfer coding not supported"
	case errors.Is(err, httpwire.ErrBothFramings), errors.Is(err, httpwire.ErrBadLength):
		msg = err.Error()
	}
	cc.lb.log.Debug("lb bad request", "client", string(cc.ip), "err", err)
	cc.writePage(code, msg, nil, nil, true, false)
	_ = cc.bw.Flush()
}

// shutdownConns closes idle client connections until none is left or ctx
// ends, when it closes the rest.
func (lb *LB) shutdownConns(ctx context.Context) error {
	// closing is set: once connMu has been held, no connection is added,
	// so Wait cannot race an Add.
	lb.connMu.Lock()
	lb.connMu.Unlock()
	done := make(chan struct{})
	go func() {
		lb.connWG.Wait()
		close(done)
	}()
	poll := time.Millisecond
	for {
		lb.connMu.Lock()
		for cc := range lb.conns {
			if cc.state.CompareAndSwap(connIdle, connClosed) {
				_ = cc.nc.Close()
			}
		}
		lb.connMu.Unlock()
		lb.wakeLoops(false)
		t := time.NewTimer(poll)
		select {
		case <-done:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			lb.connMu.Lock()
			for cc := range lb.conns {
				_ = cc.nc.Close()
			}
			lb.connMu.Unlock()
			lb.wakeLoops(true)
			<-done
			return ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, 100*time.Millisecond)
	}
}

// prefixConn is a connection some of whose bytes were read already (by an
// event loop that handed it over): reads return those first.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// SyscallConn gives connAlive the socket underneath.
func (p *prefixConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := p.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}
