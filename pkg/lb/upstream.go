package lb

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/httpwire"
)

// upConn is one keep-alive connection to a backend. The request's goroutine
// writes the request and reads the response itself: there is no reader or
// writer goroutine per connection, and so no hand-off between goroutines on
// the hot path (net/http's Transport has two).
type upConn struct {
	nc        net.Conn
	w         *rawWriter
	br        *bufio.Reader
	bw        *bufio.Writer
	head      httpwire.Head
	written   int64 // bytes written since the connection was taken
	reused    bool
	idleSince time.Time
}

// Write counts the bytes that reached the connection, so that a failed
// attempt can tell "nothing was sent" from "something was".
func (c *upConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.written += int64(n)
	return n, err
}

func (c *upConn) close() { _ = c.nc.Close() }

// connPool holds a backend's idle connections, most recently used first
// (warm connections stay warm, cold ones time out at the backend).
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	max    int
	closed bool
	// done is closed, readable without the lock: event loops, which keep
	// idle connections of their own, check it to drop theirs.
	done atomic.Bool
}

func (p *connPool) isClosed() bool { return p.done.Load() }

// take returns an idle connection, or nil.
func (p *connPool) take() *upConn {
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	c := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.mu.Unlock()
	return c
}

// put returns c to the pool, or closes it when the pool is full or closed.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleSince = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// closeIdle closes the idle connections; with final, later puts close too.
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if final {
		p.closed = true
		p.done.Store(true)
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// staleAfter is how long a connection may sit idle before it is checked for
// a close by the backend (its keep-alive timeout) before being used. Under
// load connections are reused within milliseconds and go unchecked.
const staleAfter = 500 * time.Millisecond

// acquire returns a connection to b: an idle one that is still open, or a
// new one (always a new one when fresh). careful asks for the liveness check whatever the idle time, for
// requests that could not be retried if the connection proved dead.
func (lb *LB) acquire(ctx context.Context, b *backend, careful, fresh bool, now time.Time) (*upConn, error) {
	for !fresh {
		c := b.pool.take()
		if c == nil {
			break
		}
		if (careful || now.Sub(c.idleSince) > staleAfter) && !connAlive(c.nc) {
			c.close()
			continue
		}
		c.reused = true
		c.written = 0
		return c, nil
	}
	nc, err := lb.dialer.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, err
	}
	c := &upConn{nc: nc, w: newRawWriter(nc)}
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.bw = bufio.NewWriterSize(c, 16<<10)
	return c, nil
}
