package cdn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/accept"
	"github.com/scalestack/scalestack/internal/httpwire"
)

// server is the edge's HTTP/1.1 server. It exists because of the hit path:
// net/http spends more on a request (a context, a background-read
// goroutine, a response header map cloned and sorted, several buffers) than
// the edge spends finding a stored response, and a hit is most of the
// edge's traffic. Here a connection parses request heads into a reused
// buffer; a plain GET or HEAD of a fresh stored response without Vary is
// answered by copying the object's precomputed response head and its body
// to the socket, with no allocation. Every other request (misses,
// conditionals, ranges, Vary, bodies, purges) becomes an *http.Request
// handed to Edge.ServeHTTP through a small HTTP/1.1 ResponseWriter, so all
// the caching logic lives in one place.
//
// It speaks HTTP/1.1 with keep-alive and pipelining, and HTTP/1.0 (one
// request per connection); no TLS, no HTTP/2, no Upgrade.
type server struct {
	e   *Edge
	ln  net.Listener
	ctx context.Context // requests' context; cancelled when connections are cut

	cancel   context.CancelFunc
	wg       sync.WaitGroup // the accept loop and every connection
	slots    chan struct{}  // one per open connection, up to Config.MaxConns
	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutting atomic.Bool
	date     atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	v   []string
}

// Connection states, for a graceful shutdown that closes idle connections
// and lets active ones finish their response.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// Limits of the request parser.
const (
	maxDrainBytes = 256 << 10 // request body left unread that is drained to keep the connection
	flushAt       = 32 << 10  // response bytes buffered before a write
	writevAt      = 16 << 10  // bodies at least this long are written with writev, not copied
	// writeChunk is the most written under one write deadline: a client
	// that takes at least this much per WriteTimeout is never cut.
	writeChunk = 256 << 10
)

func newServer(e *Edge, ln net.Listener) *server {
	s := &server{e: e, ln: ln, conns: make(map[*conn]struct{}), slots: make(chan struct{}, e.cfg.MaxConns)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// serve accepts connections until the listener is closed. At MaxConns
// open connections it waits for one to close before it accepts again.
func (s *server) serve() {
	defer s.wg.Done()
	accept.Serve(s.ctx, s.ln, accept.Config{Slots: s.slots, Log: s.e.log, Msg: "edge accept failed"}, s.serveConn)
}

// serveConn starts the goroutine of a connection just accepted; it owns
// the connection's slot.
func (s *server) serveConn(nc net.Conn) {
	c := &conn{s: s, e: s.e, nc: nc, br: bufio.NewReaderSize(nc, 4096)}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		nc.Close()
		<-s.slots
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// shutdown stops accepting, closes idle connections as they become idle,
// and waits for active ones until ctx ends; then it cuts what is left.
func (s *server) shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.ln.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for {
		s.mu.Lock()
		for c := range s.conns {
			if c.state.CompareAndSwap(stateIdle, stateClosed) {
				c.nc.Close()
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-tick.C:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		break
	}
	s.cancel()
	s.wg.Wait()
	return err
}

// httpDate is the current Date field value, formatted once a second.
func (s *server) httpDate(now time.Time) []string {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.v
	}
	d := &dateValue{sec: sec, v: []string{now.UTC().Format(http.TimeFormat)}}
	s.date.Store(d)
	return d.v
}

// conn is one client connection, served by one goroutine.
type conn struct {
	s      *server
	e      *Edge
	nc     net.Conn
	br     *bufio.Reader
	ctx    context.Context
	cancel context.CancelFunc
	state  atomic.Int32

	req    httpwire.Head // the current request head, copied out of br
	out    []byte        // response bytes not yet written
	vec    net.Buffers
	vecArr [2][]byte // vec's backing array, reused: WriteTo consumes vec
	werr   error     // the first write error; the connection is then dropped
	armed  time.Time // when the write deadline was last set
}

// reqHead is what the server needs to know of a request beyond its head
// (conn.req).
type reqHead struct {
	close bool // the client asked to close, speaks HTTP/1.0, or sent both framings
	slow  bool // carries a field only ServeHTTP handles
}

func (c *conn) serve() {
	defer func() {
		// A panic outside the handler (which has its own recover, see
		// serveHTTP) ends this connection only, not the process.
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			c.e.log.Error("edge connection panic", "err", v, "remote", c.nc.RemoteAddr().String(), "stack", string(debug.Stack()))
		}
		c.cancel()
		c.nc.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		<-c.s.slots
		c.s.wg.Done()
	}()
	cfg := &c.e.cfg
	for {
		if c.s.shutting.Load() {
			return
		}
		if cfg.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		}
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return
		}
		now := time.Now()
		c.nc.SetReadDeadline(now.Add(cfg.ReadHeaderTimeout))
		var h reqHead
		if status := c.readHead(&h); status != 0 {
			c.fail(status)
			return
		}
		if cfg.ReadTimeout > 0 {
			c.nc.SetReadDeadline(now.Add(cfg.ReadTimeout))
		} else {
			c.nc.SetReadDeadline(time.Time{})
		}
		keep := !h.close
		if !c.fastHit(&h, now) {
			keep = c.slow(&h) && keep
		}
		// Pipelined requests already read are answered before writing.
		if c.br.Buffered() == 0 || !keep {
			c.flush()
		}
		if c.werr != nil || !keep {
			return
		}
		c.state.Store(stateIdle)
	}
}

// readHead reads and parses one request head into c.req, and what the
// server needs of it into h. It returns 0, or the status of the error to
// answer (-1: nobody to answer).
func (c *conn) readHead(h *reqHead) int {
	r := &c.req
	err := httpwire.ReadHead(c.br, r, c.e.cfg.MaxHeaderBytes, false)
	switch {
	case err == nil:
	case errors.Is(err, httpwire.ErrBothFramings):
		// Chunked wins (RFC 9112 §6.3), and the connection is not trusted
		// with another request.
		r.ContentLength = -1
		h.close = true
	default:
		return headStatus(err)
	}
	h.close = h.close || r.Close || r.HTTP10 // one request per HTTP/1.0 connection
	h.slow = c.slowFields()
	return 0
}

// headStatus is the answer to a request head that could not be read.
func headStatus(err error) int {
	switch {
	case errors.Is(err, httpwire.ErrHeadTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, httpwire.ErrBadVersion):
		return http.StatusHTTPVersionNotSupported
	case errors.Is(err, httpwire.ErrBadCoding):
		return http.StatusNotImplemented
	case errors.Is(err, httpwire.ErrMalformed), errors.Is(err, httpwire.ErrBadLength):
		return http.StatusBadRequest
	}
	return -1 // the client went away or timed out
}

// slowFields reports whether the request carries a field that only
// Edge.ServeHTTP handles: conditionals, ranges, cache directives, Expect,
// Upgrade, and the cookie that bypasses the cache.
func (c *conn) slowFields() bool {
	for _, f := range c.req.Fields {
		switch f.Kind {
		case httpwire.FieldExpect, httpwire.FieldConditional, httpwire.FieldRange,
			httpwire.FieldCacheControl, httpwire.FieldPragma, httpwire.FieldUpgrade:
			return true
		case httpwire.FieldCookie:
			if c.e.cfg.PassCookie != "" {
				return true
			}
		}
	}
	return false
}

// fastHit answers a plain GET or HEAD of a fresh stored response that does
// not vary, and reports whether it did. It allocates nothing.
func (c *conn) fastHit(h *reqHead, now time.Time) bool {
	r := &c.req
	if h.slow || r.ContentLength > 0 || r.Chunked {
		return false
	}
	method := r.First[0].Of(r.Buf)
	head := false
	switch string(method) {
	case http.MethodGet:
	case http.MethodHead:
		head = true
	default:
		return false
	}
	target := r.First[1].Of(r.Buf)
	if len(target) == 0 || target[0] != '/' || string(target) == purgePath {
		return false
	}
	e := c.e
	o := e.store.lookupFast(target, now)
	if o == nil || o.cc.NoCache || o.lifetime <= o.currentAge(now) {
		return false
	}
	e.requests.Add(1)
	e.hits.Add(1)
	c.out = append(c.out, o.wire...)
	c.out = append(c.out, "Age: "...)
	c.out = strconv.AppendInt(c.out, int64(o.currentAge(now)/time.Second), 10)
	c.out = append(c.out, "\r\nX-Cache: HIT\r\n"...)
	if h.close {
		c.out = append(c.out, "Connection: close\r\n"...)
	}
	c.out = append(c.out, "\r\n"...)
	if !head && bodyAllowed(o.status) {
		c.write(o.body)
		e.bytesOut.Add(uint64(len(o.body)))
	}
	return true
}

// write queues p for the client, writing when enough is queued. A large p
// is written with the queued bytes in one writev, without copying it.
func (c *conn) write(p []byte) {
	if c.werr != nil {
		return
	}
	if len(p) >= writevAt {
		first := p[:min(len(p), writeChunk)]
		c.vecArr = [2][]byte{c.out, first}
		c.vec = c.vecArr[:]
		c.armWrite()
		_, c.werr = c.vec.WriteTo(c.nc)
		c.out = c.out[:0]
		if c.werr == nil {
			c.werr = c.writeAll(p[len(first):])
		}
		return
	}
	c.out = append(c.out, p...)
	if len(c.out) >= flushAt {
		c.flush()
	}
}

// writeAll writes p in pieces of writeChunk, each under a fresh deadline.
func (c *conn) writeAll(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), writeChunk)
		c.armWrite()
		if _, err := c.nc.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// armWrite sets the write deadline WriteTimeout ahead before a write, when
// a quarter of it has passed since it was last set (setting it costs a
// timer update; a hit's write should not pay that every time). A write
// therefore always has at least three quarters of WriteTimeout to make
// progress, and a client that takes nothing is cut within WriteTimeout.
func (c *conn) armWrite() {
	t := c.e.cfg.WriteTimeout
	if t <= 0 {
		return
	}
	now := time.Now()
	if now.Sub(c.armed) < t/4 {
		return
	}
	c.armed = now
	c.nc.SetWriteDeadline(now.Add(t))
}

func (c *conn) flush() {
	if len(c.out) == 0 || c.werr != nil {
		c.out = c.out[:0]
		return
	}
	c.werr = c.writeAll(c.out)
	if cap(c.out) > 4*flushAt {
		c.out = nil // do not keep a buffer grown by one large response
	} else {
		c.out = c.out[:0]
	}
}

// fail answers a request the server could not parse or serve, after the
// answers to the requests before it, and the connection is then closed.
// status -1 means there is nobody to answer.
func (c *conn) fail(status int) {
	if status < 0 {
		return
	}
	msg := http.StatusText(status)
	c.out = fmt.Appendf(c.out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, msg, len(msg)+7, "edge: "+msg+"\n")
	c.flush()
}

// slow hands a request to Edge.ServeHTTP, and reports whether the
// connection can carry another request.
func (c *conn) slow(h *reqHead) bool {
	req, body, status := c.request(h)
	if status != 0 {
		c.fail(status)
		return false
	}
	if c.req.Expect100 && body != nil {
		c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		c.flush()
	}
	w := &responseWriter{c: c, req: req, h: make(http.Header, 8), declared: -1, start: len(c.out)}
	if !c.serveHTTP(w, req) {
		if !w.wrote {
			c.out = c.out[:w.start]
			c.fail(http.StatusInternalServerError)
		}
		return false // a response cut short: only closing tells the client
	}
	w.finish()
	keep := !w.closeAfter && c.werr == nil
	if body != nil && !body.drain() {
		keep = false
	}
	return keep
}

// serveHTTP runs the handler; it reports false when the handler panicked.
// The panic is logged with its stack (but for http.ErrAbortHandler, which
// a handler raises on purpose to drop the connection, as in net/http), and
// the connection serves nothing more; the edge goes on with the others.
func (c *conn) serveHTTP(w *responseWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				c.e.log.Error("edge handler panic", "err", v, "method", req.Method, "path", req.URL.Path,
					"stack", string(debug.Stack()))
			}
		}
	}()
	c.e.ServeHTTP(w, req)
	return true
}

// request builds the *http.Request for a parsed head.
func (c *conn) request(h *reqHead) (*http.Request, *reqBody, int) {
	r := &c.req
	b := r.Buf
	target := string(r.First[1].Of(b))
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, nil, http.StatusBadRequest
	}
	hdr := make(http.Header, len(r.Fields))
	for _, f := range r.Fields {
		name := http.CanonicalHeaderKey(string(f.Name.Of(b)))
		hdr[name] = append(hdr[name], string(f.Value.Of(b)))
	}
	minor := 1
	if r.HTTP10 {
		minor = 0
	}
	req := &http.Request{
		Method:        string(r.First[0].Of(b)),
		URL:           u,
		Proto:         "HTTP/1." + strconv.Itoa(minor),
		ProtoMajor:    1,
		ProtoMinor:    minor,
		Header:        hdr,
		RequestURI:    target,
		RemoteAddr:    c.nc.RemoteAddr().String(),
		Close:         h.close,
		Body:          http.NoBody,
		ContentLength: 0,
	}
	if r.HasHost {
		req.Host = string(r.Host.Of(b))
	}
	if req.Host == "" {
		req.Host = u.Host
	}
	delete(hdr, "Host")
	var body *reqBody
	switch {
	case r.Chunked:
		body = &reqBody{r: httpwire.NewChunkedReader(c.br)}
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		delete(hdr, "Transfer-Encoding")
	case r.ContentLength > 0:
		body = &reqBody{r: io.LimitReader(c.br, r.ContentLength)}
		req.ContentLength = r.ContentLength
	}
	if body != nil {
		req.Body = body
	}
	return req.WithContext(c.ctx), body, 0
}

// reqBody is a request body read from the connection. The outbound
// transport may still read it from another goroutine after the handler
// returns, so reads take a lock, and drain ends them for good before the
// connection reads its next request.
type reqBody struct {
	mu     sync.Mutex
	r      io.Reader
	eof    bool
	closed bool
}

var errBodyDone = errors.New("edge: request body read after the response")

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyDone
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

// Close does nothing: the server drains the body after the handler.
func (b *reqBody) Close() error { return nil }

// drain reads what is left of the body, up to maxDrainBytes, and reports
// whether the connection is positioned at the next request.
func (b *reqBody) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.eof {
		return true
	}
	n, err := io.CopyN(io.Discard, b.r, maxDrainBytes+1)
	return n <= maxDrainBytes && errors.Is(err, io.EOF)
}

// responseWriter is the http.ResponseWriter of a request that goes through
// Edge.ServeHTTP. It frames the body with the handler's Content-Length, or
// chunked when there is none.
type responseWriter struct {
	c          *conn
	req        *http.Request
	start      int // len(c.out) when the handler began: earlier responses end there
	h          http.Header
	wrote      bool
	noBody     bool
	chunked    bool
	declared   int64 // Content-Length the handler set, or -1
	written    int64
	closeAfter bool
}

func (w *responseWriter) Header() http.Header { return w.h }

func (w *responseWriter) WriteHeader(code int) {
	if w.wrote || code < 200 {
		return
	}
	w.wrote = true
	c, h := w.c, w.h
	w.noBody = w.req.Method == http.MethodHead || !bodyAllowed(code)
	if cl := h["Content-Length"]; len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			delete(h, "Content-Length")
		}
	}
	delete(h, "Transfer-Encoding")
	if !w.noBody && w.declared < 0 {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
			h["Transfer-Encoding"] = []string{"chunked"}
		} else {
			w.closeAfter = true
		}
	}
	if code == http.StatusNoContent || code == http.StatusNotModified {
		delete(h, "Content-Length")
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = c.s.httpDate(time.Now())
	}
	if w.req.Close || c.s.shutting.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		h["Connection"] = []string{"close"}
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status"
	}
	c.out = append(c.out, "HTTP/1.1 "...)
	c.out = strconv.AppendInt(c.out, int64(code), 10)
	c.out = append(c.out, ' ')
	c.out = append(c.out, text...)
	c.out = append(c.out, "\r\n"...)
	c.out = appendFields(c.out, h)
	c.out = append(c.out, "\r\n"...)
}

// appendFields writes header fields, dropping any value that would break
// the framing (a CR or LF in it).
func appendFields(out []byte, h http.Header) []byte {
	for k, vs := range h {
		for _, v := range vs {
			if containsCRLF(k) || containsCRLF(v) {
				continue
			}
			out = append(out, k...)
			out = append(out, ": "...)
			out = append(out, v...)
			out = append(out, "\r\n"...)
		}
	}
	return out
}

func containsCRLF(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			return true
		}
	}
	return false
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return len(p), nil
	}
	if w.c.werr != nil {
		return 0, w.c.werr
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		// More than the handler declared: the rest would corrupt the
		// next response on this connection.
		p = p[:w.declared-w.written]
		w.closeAfter = true
	}
	w.written += int64(len(p))
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		w.c.out = httpwire.AppendChunkSize(w.c.out, len(p))
		w.c.write(p)
		w.c.out = append(w.c.out, "\r\n"...)
	} else {
		w.c.write(p)
	}
	return len(p), w.c.werr
}

// Flush sends what is buffered, so that a streamed body reaches the client
// as it arrives from the origin.
func (w *responseWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.c.flush()
}

func (w *responseWriter) finish() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.c.out = append(w.c.out, httpwire.LastChunk...)
	}
	if !w.noBody && w.declared >= 0 && w.written < w.declared {
		// The body ended short of its Content-Length: only closing the
		// connection tells the client.
		w.closeAfter = true
	}
}
