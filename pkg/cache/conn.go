package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"github.com/scalestack/scalestack/pkg/cache/resp"
)

// conn is one client connection: its buffers and session state, and the
// loop that parses and executes its requests. Two transports move its
// bytes: a goroutine per connection over net.Conn (serve, below), or an
// epoll event loop shared by many connections (eventloop_linux.go).
type conn struct {
	s      *Server
	id     uint64
	remote string
	local  string
	authed bool
	name   string
	quit   bool
	opened int64 // Unix nanoseconds when the connection was accepted
	// authFails counts wrong AUTHs; holdUntil (Unix nanoseconds, 0 for
	// none) is when the reply to the last one may go, before which the
	// connection executes nothing more (Config.AuthFailDelay).
	authFails int
	holdUntil int64

	rbuf []byte // bytes read, rbuf[r:w] not yet parsed
	r, w int
	out  []byte // replies not yet written
	args [][]byte
	now  int64 // Unix nanoseconds when the current batch was read

	nc net.Conn // goroutine transport

	fd      int        // event-loop transport
	loop    *eventLoop // event-loop transport
	sent    int        // event loop: out[:sent] is written
	blocked bool       // event loop: waiting for the socket to take out[sent:]
}

// tlsHandshakeTimeout bounds a TLS client's handshake.
const tlsHandshakeTimeout = 10 * time.Second

const (
	readBufSize  = 16 << 10
	flushAt      = 64 << 10 // stop executing and write once this many reply bytes wait
	keepBufBelow = 64 << 10 // a buffer grown past this for one big request is dropped after it
)

func newConn(s *Server, id uint64) *conn {
	return &conn{
		s:      s,
		id:     id,
		authed: s.cfg.Password == "",
		opened: time.Now().UnixNano(),
		rbuf:   make([]byte, readBufSize),
		out:    make([]byte, 0, readBufSize),
	}
}

// readDeadline is when a connection that has sent nothing more is closed:
// IdleTimeout after its last bytes, or AuthTimeout after it was accepted
// while it has not authenticated; zero for never.
func (c *conn) readDeadline(last int64) int64 {
	var d int64
	if t := c.s.cfg.IdleTimeout; t > 0 {
		d = last + int64(t)
	}
	if t := c.s.cfg.AuthTimeout; t > 0 && !c.authed {
		if a := c.opened + int64(t); d == 0 || a < d {
			d = a
		}
	}
	return d
}

// room returns the free end of rbuf for the next read, moving unparsed
// bytes to the front or growing the buffer as needed, within the request
// size limit. The buffer grows only when the bytes already read fill it,
// never to the length a request declares: a client that announces a large
// value costs nothing until it has sent it.
func (c *conn) room() ([]byte, error) {
	if c.r == c.w {
		c.r, c.w = 0, 0
		if len(c.rbuf) > keepBufBelow {
			c.rbuf = make([]byte, readBufSize)
		}
	}
	if c.w == len(c.rbuf) {
		if c.r > 0 {
			c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
			c.r = 0
		} else {
			// One request fills the buffer: grow it, within the limit.
			if len(c.rbuf) >= c.s.limits.MaxRequest {
				return nil, resp.ProtocolError("request larger than the buffer limit")
			}
			c.grow(2 * len(c.rbuf))
		}
	}
	return c.rbuf[c.w:], nil
}

func (c *conn) grow(size int) {
	size = min(size, c.s.limits.MaxRequest)
	if size <= len(c.rbuf) {
		return
	}
	b := make([]byte, size)
	c.w = copy(b, c.rbuf[c.r:c.w])
	c.r = 0
	c.rbuf = b
}

// executeBuffered executes the complete requests in rbuf, appending their
// replies to out, until none is left or flushAt reply bytes wait, or a
// wrong AUTH holds the connection (holdUntil). It returns how many it
// executed and whether it stopped early, in which case the caller writes
// the replies (after the hold) and calls again.
func (c *conn) executeBuffered() (count int, more bool, err error) {
	for c.r < c.w && !c.quit {
		if len(c.out) >= flushAt || c.holdUntil != 0 {
			return count, true, nil
		}
		lim := &c.s.limits
		if !c.authed {
			lim = &c.s.preAuth
		}
		args, n, _, err := resp.ParseRequest(c.rbuf[c.r:c.w], c.args, *lim)
		c.args = args
		if err != nil {
			return count, false, err
		}
		if n == 0 {
			break
		}
		c.r += n
		if len(args) == 0 {
			continue
		}
		c.execute(args)
		count++
	}
	return count, c.holdUntil != 0, nil
}

// resetOut empties out after it was written, dropping a buffer that grew
// large for one big reply.
func (c *conn) resetOut() {
	if cap(c.out) > keepBufBelow {
		c.out = make([]byte, 0, readBufSize)
	} else {
		c.out = c.out[:0]
	}
}

// protocolError answers a malformed request. Where the next request starts
// is unknown, so the caller hangs up after writing it, as Redis does.
func (c *conn) protocolError(err error) bool {
	var pe resp.ProtocolError
	if !errors.As(err, &pe) {
		return false
	}
	c.out = resp.AppendError(c.out, "ERR "+pe.Error())
	c.s.log.Debug("cache protocol error", "conn", c.id, "remote", c.remote, "err", err)
	return true
}

// serve runs a connection on its own goroutine (the portable transport).
func (c *conn) serve() {
	s := c.s
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connsOpen.Add(-1)
		s.wg.Done()
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		// Bounded, so that a client that connects and says nothing does
		// not hold a connection slot until IdleTimeout (by default never).
		ctx, cancel := context.WithTimeout(s.ctx, tlsHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.log.Debug("cache tls handshake failed", "conn", c.id, "remote", c.remote, "err", err)
			return
		}
	}
	for {
		err := c.readOnce()
		for err == nil {
			c.now = time.Now().UnixNano()
			var n int
			var more bool
			n, more, err = c.executeBuffered()
			s.commands.Add(uint64(n))
			if err != nil {
				break
			}
			if !c.waitHold() {
				return
			}
			if err = c.flush(); err != nil || c.quit {
				return
			}
			if !more {
				break
			}
		}
		if err != nil {
			if c.protocolError(err) {
				c.flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
				s.log.Debug("cache connection closed", "conn", c.id, "err", err)
			}
			return
		}
	}
}

// waitHold sleeps until the reply to a wrong AUTH may go; it reports false
// when the server closed meanwhile.
func (c *conn) waitHold() bool {
	if c.holdUntil == 0 {
		return true
	}
	t := time.NewTimer(time.Until(time.Unix(0, c.holdUntil)))
	defer t.Stop()
	c.holdUntil = 0
	select {
	case <-t.C:
		return true
	case <-c.s.ctx.Done():
		return false
	}
}

// readOnce reads at least one byte into rbuf.
func (c *conn) readOnce() error {
	buf, err := c.room()
	if err != nil {
		return err
	}
	if d := c.readDeadline(time.Now().UnixNano()); d != 0 {
		c.nc.SetReadDeadline(time.Unix(0, d))
	}
	n, err := c.nc.Read(buf)
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.resetOut()
	return err
}
