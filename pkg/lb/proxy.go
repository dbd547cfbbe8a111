package lb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxTried bounds the backends one request may be sent to; Retries beyond it
// are not useful and would need a heap-allocated list.
const maxTried = 8

// failKind classifies why an attempt failed.
type failKind int

const (
	failNone    failKind = iota
	failDial             // no connection: nothing was sent
	failTimeout          // no response headers in time
	failOther            // the connection broke after the request may have been sent
)

// trackedBody passes a client's request body to a backend and remembers
// whether any of it was read, so that a request whose body was never touched
// can be sent again. Close does nothing: the transport closes request bodies
// on failure, and a retry needs the client's body still open; the server
// closes it when the handler returns.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	if !t.read.Load() {
		t.read.Store(true)
	}
	return t.rc.Read(p)
}

func (t *trackedBody) Close() error { return nil }

// ServeHTTP proxies one request: it rewrites the request in place (the
// balancer owns it), picks a backend, retries where safe, and streams the
// response back.
func (lb *LB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	lb.requests.Add(1)
	lb.budget.request(start)

	reqID := lb.prepare(r)
	idempotent := isIdempotent(r)
	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &trackedBody{rc: r.Body}
		r.Body = body
	}
	r.RequestURI = ""
	r.URL.Scheme = "http"

	p := lb.pool.Load()
	var tried [maxTried]*backend
	n := 0
	attempts := min(1+lb.cfg.Retries, maxTried)
	lastFail := failNone
	allDial := true
	budgeted := false // the next attempt's retry was already taken from the budget
	for n < attempts {
		b := lb.pick(p, r, tried[:n])
		if b == nil {
			break
		}
		if n > 0 && !budgeted {
			if !lb.budget.allow(time.Now()) {
				lb.retriesDenied.Add(1)
				break
			}
		}
		if n > 0 {
			lb.retries.Add(1)
		}
		budgeted = false
		tried[n] = b
		n++
		r.URL.Host = b.addr

		b.inflight.Add(1)
		b.requests.Add(1)
		t0 := time.Now()
		resp, err := b.transport.RoundTrip(r)
		if err != nil {
			b.inflight.Add(-1)
			if r.Context().Err() != nil {
				// The client went away; that says nothing of the backend.
				lb.clientGone.Add(1)
				return
			}
			kind := classify(err)
			b.errors.Add(1)
			lb.passiveError(b)
			lastFail = kind
			if kind != failDial {
				allDial = false
			}
			lb.log.Debug("lb attempt failed", "backend", b.name, "method", r.Method, "path", r.URL.Path, "request_id", reqID, "err", err)
			// A refused or timed-out dial sent nothing, so any request may
			// go elsewhere (unless its body was somehow read). Otherwise
			// the request may have reached the node: only an idempotent
			// request without a body (which cannot be replayed) is retried.
			if (kind == failDial && (body == nil || !body.read.Load())) || (idempotent && body == nil) {
				continue
			}
			break
		}
		allDial = false
		if resp.StatusCode >= 500 {
			b.responses5xx.Add(1)
			lb.passive5xx(b)
		} else {
			lb.passiveOK(b)
		}
		if lb.cfg.RetryOnGatewayError && isGatewayError(resp.StatusCode) && idempotent && body == nil &&
			n < attempts && lb.hasUntried(p, tried[:n]) && lb.budget.allow(time.Now()) {
			// Another node may answer; this answer is dropped, its
			// connection kept when the body is small.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			b.inflight.Add(-1)
			b.observe(time.Since(t0))
			budgeted = true
			continue
		}
		lb.forward(w, r, resp, b, reqID)
		b.inflight.Add(-1)
		b.observe(time.Since(t0))
		return
	}
	switch {
	case n == 0 || (allDial && lastFail == failDial):
		lb.noBackend.Add(1)
		lb.failPage(w, r, http.StatusServiceUnavailable, "no app node is available", reqID)
	case lastFail == failTimeout:
		lb.failPage(w, r, http.StatusGatewayTimeout, "the app node did not answer in time", reqID)
	default:
		lb.failPage(w, r, http.StatusBadGateway, "the app node failed to answer", reqID)
	}
}

// prepare rewrites the request headers for the backend and returns the
// request id.
func (lb *LB) prepare(r *http.Request) string {
	h := r.Header
	removeHopByHop(h)

	var reqID string
	if v := h["X-Request-Id"]; len(v) > 0 && v[0] != "" {
		reqID = v[0]
	} else {
		reqID = lb.newRequestID()
		h["X-Request-Id"] = []string{reqID}
	}

	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
		} else {
			h["X-Forwarded-For"] = []string{ip}
		}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok || !lb.cfg.TrustForwarded {
		if r.TLS != nil {
			h["X-Forwarded-Proto"] = []string{"https"}
		} else {
			h["X-Forwarded-Proto"] = lb.proto
		}
	}
	if prior := h["Via"]; len(prior) > 0 {
		h["Via"] = append(prior[:len(prior):len(prior)], lb.via)
	} else {
		h["Via"] = lb.viaVals
	}
	if _, ok := h["User-Agent"]; !ok {
		// Keep the transport from adding its own.
		h["User-Agent"] = lb.noUA
	}
	return reqID
}

// newRequestID returns a short id unique to this balancer process: a random
// prefix chosen at New and a counter.
func (lb *LB) newRequestID() string {
	var buf [32]byte
	b := append(buf[:0], lb.idBase...)
	b = append(b, '-')
	b = strconv.AppendUint(b, lb.ids.Add(1), 36)
	return string(b)
}

// hopByHop are the headers that belong to one connection (RFC 9110 7.6.1)
// and must not be forwarded; Proxy-* headers are removed too.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes hop-by-hop headers and those the Connection header
// names.
func removeHopByHop(h http.Header) {
	if c := h["Connection"]; len(c) > 0 {
		for _, v := range c {
			for len(v) > 0 {
				var name string
				name, v, _ = strings.Cut(v, ",")
				if name = strings.TrimSpace(name); name != "" {
					h.Del(name)
				}
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}

func isIdempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	return ok
}

func isGatewayError(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// classify tells a failed connection (nothing sent) from a timeout and from
// a connection that broke once the request may have been sent.
func classify(err error) failKind {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return failDial
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return failTimeout
	}
	return failOther
}

// pick chooses the backend for the next attempt, skipping those tried.
func (lb *LB) pick(p *pool, r *http.Request, tried []*backend) *backend {
	list := p.eligible
	if len(list) == 0 {
		list = p.fallback
	}
	n := len(list)
	if n == 0 {
		return nil
	}
	if lb.cfg.Sticky && len(p.eligible) > 0 {
		if b := lb.pickSticky(p, r, tried); b != nil {
			return b
		}
	}
	switch lb.cfg.Policy {
	case PolicyWeighted:
		if len(p.eligible) > 0 {
			lb.wmu.Lock()
			i := p.swrr.next(p.weights)
			lb.wmu.Unlock()
			if b := p.eligible[i]; !contains(tried, b) {
				return b
			}
		}
	case PolicyLeastConn:
		start := int(lb.rr.Add(1) % uint64(n))
		var best *backend
		var bestLoad int64
		for k := 0; k < n; k++ {
			b := list[(start+k)%n]
			if contains(tried, b) {
				continue
			}
			if l := b.inflight.Load(); best == nil || l < bestLoad {
				best, bestLoad = b, l
			}
		}
		return best
	}
	start := int(lb.rr.Add(1) % uint64(n))
	for k := 0; k < n; k++ {
		if b := list[(start+k)%n]; !contains(tried, b) {
			return b
		}
	}
	return nil
}

// pickSticky returns the backend holding the request's session: the one its
// affinity cookie names, else the one its session cookie hashes to. Nil when
// the request has no session or that backend was tried.
func (lb *LB) pickSticky(p *pool, r *http.Request, tried []*backend) *backend {
	if _, ok := r.Header["Cookie"]; !ok {
		return nil
	}
	if c, err := r.Cookie(lb.cfg.AffinityCookie); err == nil {
		for _, b := range p.eligible {
			if b.name == c.Value && !contains(tried, b) {
				return b
			}
		}
	}
	if c, err := r.Cookie(lb.cfg.StickyCookie); err == nil && c.Value != "" {
		if i := rendezvous(hashString(c.Value), p.hashes); i >= 0 && !contains(tried, p.eligible[i]) {
			return p.eligible[i]
		}
	}
	return nil
}

func (lb *LB) hasUntried(p *pool, tried []*backend) bool {
	list := p.eligible
	if len(list) == 0 {
		list = p.fallback
	}
	for _, b := range list {
		if !contains(tried, b) {
			return true
		}
	}
	return false
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}

// forward writes the backend's response to the client, flushing as it goes
// when the response is streamed.
func (lb *LB) forward(w http.ResponseWriter, r *http.Request, resp *http.Response, b *backend, reqID string) {
	defer resp.Body.Close()
	h := w.Header()
	removeHopByHop(resp.Header)
	for k, vv := range resp.Header {
		h[k] = vv
	}
	h["X-LB"] = lb.xlb
	if prior := h["Via"]; len(prior) > 0 {
		h["Via"] = append(prior[:len(prior):len(prior)], lb.via)
	} else {
		h["Via"] = lb.viaVals
	}
	if _, ok := h["X-Request-Id"]; !ok {
		h["X-Request-Id"] = []string{reqID}
	}
	if lb.cfg.Sticky {
		lb.setAffinity(h, b)
	}
	if len(resp.Trailer) > 0 {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	streaming := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	bufp := lb.bufPool.Get().(*[]byte)
	err := copyBody(w, resp.Body, *bufp, streaming)
	lb.bufPool.Put(bufp)
	if err != nil {
		var werr writeError
		if errors.As(err, &werr) {
			lb.clientGone.Add(1)
			return
		}
		// The backend broke mid-body: the client must not take a short
		// body for a whole one, so the connection is aborted.
		b.errors.Add(1)
		lb.passiveError(b)
		lb.log.Warn("lb response body cut", "backend", b.name, "request_id", reqID, "err", err)
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
}

// writeError marks a failure to write to the client.
type writeError struct{ error }

func (e writeError) Unwrap() error { return e.error }

// copyBody copies src to w with buf, flushing after each write when
// streaming, and tells write failures (the client) from read failures (the
// backend).
func copyBody(w http.ResponseWriter, src io.Reader, buf []byte, streaming bool) error {
	var fl http.Flusher
	if streaming {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return writeError{err}
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// setAffinity adds the affinity cookie naming b when the backend has just
// set the session cookie, so that the session's next requests come back to
// the node that holds it.
func (lb *LB) setAffinity(h http.Header, b *backend) {
	prefix := lb.cfg.StickyCookie + "="
	for _, sc := range h["Set-Cookie"] {
		if strings.HasPrefix(sc, prefix) {
			c := http.Cookie{Name: lb.cfg.AffinityCookie, Value: b.name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
			h["Set-Cookie"] = append(h["Set-Cookie"], c.String())
			return
		}
	}
}

// passiveError counts a connection error towards ejection.
func (lb *LB) passiveError(b *backend) {
	b.consec5xx.Store(0)
	if th := lb.cfg.EjectConsecutiveErrors; th > 0 && b.consecErrors.Add(1) >= int64(th) {
		lb.eject(b, "consecutive connection errors")
	}
}

// passive5xx counts a 5xx response towards ejection.
func (lb *LB) passive5xx(b *backend) {
	b.consecErrors.Store(0)
	if th := lb.cfg.EjectConsecutive5xx; th > 0 && b.consec5xx.Add(1) >= int64(th) {
		lb.eject(b, "consecutive 5xx")
	}
}

// passiveOK resets the failure counts; the loads keep the hot path from
// writing shared cache lines when there is nothing to reset.
func (lb *LB) passiveOK(b *backend) {
	if b.consecErrors.Load() != 0 {
		b.consecErrors.Store(0)
	}
	if b.consec5xx.Load() != 0 {
		b.consec5xx.Store(0)
	}
}

// failPage answers a request no backend could, in JSON when the client
// accepts JSON and in HTML otherwise.
func (lb *LB) failPage(w http.ResponseWriter, r *http.Request, code int, reason, reqID string) {
	switch code {
	case http.StatusBadGateway:
		lb.failed[0].Add(1)
	case http.StatusServiceUnavailable:
		lb.failed[1].Add(1)
	case http.StatusGatewayTimeout:
		lb.failed[2].Add(1)
	}
	h := w.Header()
	h["X-LB"] = lb.xlb
	h["Via"] = lb.viaVals
	h["X-Request-Id"] = []string{reqID}
	h.Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	if strings.Contains(r.Header.Get("Accept"), "json") {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"error":`+strconv.Quote(reason)+`,"status":`+strconv.Itoa(code)+
			`,"lb":`+strconv.Quote(lb.cfg.NodeName)+`,"request_id":`+strconv.Quote(reqID)+"}\n")
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, "<!doctype html>\n<html><head><title>"+status+"</title></head><body>\n<h1>"+status+
		"</h1>\n<p>"+htmlEscape(reason)+". Please try again in a moment.</p>\n<p><small>load balancer "+
		htmlEscape(lb.cfg.NodeName)+", request "+htmlEscape(reqID)+"</small></p>\n</body></html>\n")
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(s)
}
