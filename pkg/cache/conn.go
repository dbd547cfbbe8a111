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
		rbuf:   make([]byte, readBufSize),
		out:    make([]byte, 0, readBufSize),
	}
}

// room returns the free end of rbuf for the next read, moving unparsed
// bytes to the front or growing the buffer as needed, within the request
// size limit.
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
// replies to out, until none is left or flushAt reply bytes wait. It
// returns how many it executed and whether it stopped for the replies, in
// which case the caller writes them and calls again.
func (c *conn) executeBuffered() (count int, full bool, err error) {
	for c.r < c.w && !c.quit {
		if len(c.out) >= flushAt {
			return count, true, nil
		}
		args, n, need, err := resp.ParseRequest(c.rbuf[c.r:c.w], c.args, c.s.limits)
		c.args = args
		if err != nil {
			return count, false, err
		}
		if n == 0 {
			if need > len(c.rbuf) {
				c.grow(need)
			}
			break
		}
		c.r += n
		if len(args) == 0 {
			continue
		}
		c.execute(args)
		count++
	}
	return count, false, nil
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
			var full bool
			n, full, err = c.executeBuffered()
			s.commands.Add(uint64(n))
			if err != nil {
				break
			}
			if err = c.flush(); err != nil || c.quit {
				return
			}
			if !full {
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

// readOnce reads at least one byte into rbuf.
func (c *conn) readOnce() error {
	buf, err := c.room()
	if err != nil {
		return err
	}
	if c.s.cfg.IdleTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
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
