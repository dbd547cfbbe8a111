package lb

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/httpwire"
	"github.com/scalestack/scalestack/internal/tracectx"
)

// maxTried bounds the backends one request may be sent to.
const maxTried = 8

// maxBufferedBody is the largest request body read whole before it is sent,
// so that it can be sent again to another backend when that is safe. Larger
// bodies are streamed and never replayed.
const maxBufferedBody = 64 << 10

// failKind classifies why an attempt failed.
type failKind int

const (
	failNone    failKind = iota
	failDial             // no connection, or nothing was sent
	failTimeout          // no response head in time
	failOther            // the connection broke after the request may have been sent
)

// exchange is one request on its way through the balancer: what is known
// of it and how its tries have gone. It lives on serveRequest's stack.
type exchange struct {
	isHead     bool
	idempotent bool // safe to apply twice: by its method, or an Idempotency-Key
	streamBody bool // the body is streamed, not read whole first
	replayable bool // the request can be sent again (its body is in memory)
	reqID      []byte
	traceID    []byte // the trace id (32 hex digits) sent on, for the logs; nil: none
	cookies    []byte

	pool        *pool // the backends as the request found them
	tried       [maxTried]*backend
	n, attempts int // backends tried, and the most that may be
	lastFail    failKind
	allDial     bool // every failed try failed before sending anything
	budgeted    bool // the next retry was paid for from the retry budget already
	bodyTouched bool // a streamed body began to be read: it cannot go elsewhere
	// again is a backend to try once more on a new connection, after a
	// kept-alive one failed as if the backend had closed it while idle: it
	// is the same attempt, as in net/http, and costs no retry budget.
	again *backend
}

// tryResult is what one try at a backend leaves serveRequest to do.
type tryResult int

const (
	tryNext tryResult = iota // try another backend, or the same one again
	tryStop                  // no more tries: answer the failure
	tryDone                  // a response went back, or there is nobody to answer
)

// serveRequest proxies the request in cc.req: it builds the request for the
// backends, picks one, retries where safe, and streams the response back.
// It reports whether the client connection may carry another request.
func (cc *clientConn) serveRequest(start time.Time) bool {
	lb := cc.lb
	lb.requests.Add(1)
	lb.budget.Request(start)
	var x exchange
	if !cc.prepare(&x) {
		return false
	}
	for {
		b, fresh := x.next(lb)
		if b == nil {
			break
		}
		result, keep := cc.try(&x, b, fresh)
		if result == tryDone {
			return keep
		}
		if result == tryStop {
			break
		}
	}
	return cc.answerFailure(&x)
}

// prepare writes the request for the backends into cc.out, reads its body
// when it is small enough to be sent again, and starts x. It reports false
// when the client went away.
func (cc *clientConn) prepare(x *exchange) bool {
	r := &cc.req
	ids := cc.buildRequest()
	streamBody := r.Chunked || r.ContentLength > maxBufferedBody
	if !streamBody && r.ContentLength > 0 && !cc.readBody() {
		return false
	}
	// After the body: reading it may have moved cc.out.
	x.start(cc.lb, r, ids.reqID(cc.out), ids.traceID(cc.out))
	x.streamBody, x.replayable = streamBody, !streamBody
	return true
}

// start fills x for a new request r; reqID is the X-Request-Id the
// balancer generated for it, if any, and traceID the trace id of the
// traceparent it sends on, if any.
func (x *exchange) start(lb *LB, r *httpwire.Head, reqID, traceID []byte) {
	method := r.First[0].Of(r.Buf)
	_, hasKey := r.Value(httpwire.FieldIdempotencyKey)
	*x = exchange{
		isHead:     string(method) == "HEAD",
		idempotent: hasKey || isIdempotentMethod(method),
		replayable: true,
		reqID:      reqID,
		traceID:    traceID,
		pool:       lb.pool.Load(),
		attempts:   min(1+lb.cfg.Retries, maxTried),
		allDial:    true,
	}
	if len(reqID) == 0 {
		x.reqID, _ = r.Value(httpwire.FieldXRequestID)
	}
	x.cookies, _ = r.Value(httpwire.FieldCookie)
}

// readBody appends the request's body to cc.out, after a 100 Continue
// when the client waits for one. It reports false when the client went
// away.
func (cc *clientConn) readBody() bool {
	r := &cc.req
	if r.Expect100 {
		_, _ = cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if cc.bw.Flush() != nil {
			return false
		}
	}
	n := len(cc.out)
	cc.out = slices.Grow(cc.out, int(r.ContentLength))[:n+int(r.ContentLength)]
	_, err := io.ReadFull(cc.br, cc.out[n:])
	return err == nil
}

// next returns the backend of the next try and whether it must be on a new
// connection, or nil when no try is left (none untried, or the retry
// budget spent).
func (x *exchange) next(lb *LB) (*backend, bool) {
	if b := x.again; b != nil {
		x.again = nil
		return b, true
	}
	if x.n >= x.attempts {
		return nil, false
	}
	b := lb.pick(x.pool, x.cookies, x.tried[:x.n])
	if b == nil {
		return nil, false
	}
	if x.n > 0 && !x.budgeted && !lb.budget.Allow(time.Now()) {
		lb.retriesDenied.Add(1)
		return nil, false
	}
	if x.n > 0 {
		lb.retries.Add(1)
	}
	x.budgeted = false
	x.tried[x.n] = b
	x.n++
	return b, false
}

// try sends the request to b and relays its response. keep, with tryDone,
// reports whether the client connection may carry another request.
func (cc *clientConn) try(x *exchange, b *backend, fresh bool) (result tryResult, keep bool) {
	lb := cc.lb
	b.inflight.Add(1)
	b.requests.Add(1)
	t0 := time.Now()
	uc, err := lb.acquire(lb.ctx, b, !(x.idempotent && x.replayable), fresh, t0)
	if err != nil {
		b.inflight.Add(-1)
		b.errors.Add(1)
		lb.passiveError(b)
		x.lastFail = failDial
		lb.log.Debug("lb connect failed", "backend", b.name, "request_id", string(x.reqID), "trace_id", string(x.traceID), "err", err)
		return tryNext, false // nothing was sent: any request may go elsewhere
	}
	if err := cc.send(uc, x.streamBody, &x.bodyTouched); err != nil {
		return cc.sendFailed(x, b, uc, err), false
	}
	x.allDial = false
	if err := lb.readResponseHead(uc); err != nil {
		return cc.headFailed(x, b, uc, err), false
	}
	lb.passiveResponse(b, &uc.head)
	if cc.retryGatewayError(x, b, uc) {
		b.inflight.Add(-1)
		b.observe(time.Since(t0))
		return tryNext, false
	}
	keep = cc.writeResponse(uc, b, x.reqID, x.traceID, x.isHead)
	b.inflight.Add(-1)
	b.observe(time.Since(t0))
	return tryDone, keep
}

// retryOrStop is what follows a failure after the request may have reached
// the node and been applied: only an idempotent request that can be sent
// again is retried.
func (x *exchange) retryOrStop() tryResult {
	if x.idempotent && x.replayable {
		return tryNext
	}
	return tryStop
}

// sendFailed handles a failure to send the request to b on uc.
func (cc *clientConn) sendFailed(x *exchange, b *backend, uc *upConn, err error) tryResult {
	lb := cc.lb
	uc.close()
	b.inflight.Add(-1)
	var re httpwire.ReadError
	if errors.As(err, &re) {
		return tryDone // the client's body failed: nobody to answer
	}
	lb.log.Debug("lb send failed", "backend", b.name, "request_id", string(x.reqID), "trace_id", string(x.traceID), "written", uc.written, "reused", uc.reused, "err", err)
	if uc.reused && uc.written == 0 && !x.bodyTouched {
		x.again = b // a dead idle connection: nothing was sent
		return tryNext
	}
	b.errors.Add(1)
	lb.passiveError(b)
	if uc.written == 0 && !x.bodyTouched {
		x.lastFail = failDial
		return tryNext
	}
	x.allDial = false
	x.lastFail = failOther
	return x.retryOrStop()
}

// headFailed handles a response head from b that did not come.
func (cc *clientConn) headFailed(x *exchange, b *backend, uc *upConn, err error) tryResult {
	lb := cc.lb
	uc.close()
	b.inflight.Add(-1)
	if uc.reused && uc.head.Empty && x.idempotent && x.replayable && closedByPeer(err) {
		// The backend closed a kept-alive connection as the request went
		// out (its idle timeout, or a graceful restart).
		x.again = b
		return tryNext
	}
	b.errors.Add(1)
	lb.passiveError(b)
	x.lastFail = failOther
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		x.lastFail = failTimeout
	}
	lb.log.Debug("lb response failed", "backend", b.name, "request_id", string(x.reqID), "trace_id", string(x.traceID), "reused", uc.reused, "err", err)
	return x.retryOrStop()
}

// retryGatewayError discards a 502, 503 or 504 from b and reports true
// when the request may go to another backend instead
// (Config.RetryOnGatewayError, within the retry budget).
func (cc *clientConn) retryGatewayError(x *exchange, b *backend, uc *upConn) bool {
	lb := cc.lb
	if !lb.cfg.RetryOnGatewayError || !isGatewayError(uc.head.Status) || !x.idempotent || !x.replayable ||
		x.n >= x.attempts || !lb.hasUntried(x.pool, x.tried[:x.n]) || !lb.budget.Allow(time.Now()) {
		return false
	}
	lb.discardResponse(b, uc, x.isHead)
	x.budgeted = true
	return true
}

// answerFailure answers a request that no backend answered: 503 when none
// could be reached, 504 when one did not answer in time, 502 otherwise.
func (cc *clientConn) answerFailure(x *exchange) bool {
	lb, r := cc.lb, &cc.req
	// A streamed body may be partly unread: the connection cannot carry
	// another request.
	keep := !x.streamBody && !lb.closing.Load() && !r.Close && !(r.HTTP10 && !r.KeepAlive)
	switch {
	case x.n == 0 || (x.allDial && x.lastFail == failDial):
		lb.failed[1].Add(1)
		cc.writePage(503, "no app node is available", x.reqID, x.traceID, !keep, x.isHead)
	case x.lastFail == failTimeout:
		lb.failed[2].Add(1)
		cc.writePage(504, "the app node did not answer in time", x.reqID, x.traceID, !keep, x.isHead)
	default:
		lb.failed[0].Add(1)
		cc.writePage(502, "the app node failed to answer", x.reqID, x.traceID, !keep, x.isHead)
	}
	return keep
}

func isIdempotentMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

func isGatewayError(code int) bool { return code == 502 || code == 503 || code == 504 }

// sentIDs says where the ids that buildRequest wrote sit in cc.out, as
// offsets: cc.out may move before they are read.
type sentIDs struct {
	idStart, idEnd int // a generated X-Request-Id; empty when the client sent one
	trace          int // the trace id of the traceparent sent on; 0: none
}

func (s sentIDs) reqID(out []byte) []byte { return out[s.idStart:s.idEnd] }

func (s sentIDs) traceID(out []byte) []byte {
	if s.trace == 0 {
		return nil
	}
	return out[s.trace : s.trace+32]
}

// buildRequest writes the request head for the backends into cc.out: the
// client's fields less the hop-by-hop ones, plus X-Forwarded-For,
// X-Forwarded-Proto, X-Request-Id, Via and a traceparent (see trace).
func (cc *clientConn) buildRequest() (ids sentIDs) {
	lb := cc.lb
	r := &cc.req
	rb := r.Buf
	out := cc.out[:0]
	out = append(out, r.First[0].Of(rb)...)
	out = append(out, ' ')
	out = append(out, r.First[1].Of(rb)...)
	out = append(out, " HTTP/1.1\r\n"...)
	if !r.HasHost {
		out = append(out, "Host: "...)
		out = append(out, lb.Addr()...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "X-Forwarded-For: "...)
	for i := range r.Fields {
		if f := &r.Fields[i]; f.Kind == httpwire.FieldXForwardedFor && f.Value.End > f.Value.Start {
			out = append(out, f.Value.Of(rb)...)
			out = append(out, ", "...)
		}
	}
	out = append(out, cc.ip...)
	out = append(out, "\r\n"...)
	sc, sendTrace, keepState := lb.trace(r)
	hasProto, hasID := false, false
	for i := range r.Fields {
		f := &r.Fields[i]
		if f.Hop {
			continue
		}
		switch f.Kind {
		case httpwire.FieldXForwardedFor, httpwire.FieldTraceparent:
			continue
		case httpwire.FieldTracestate:
			if !keepState {
				continue
			}
		case httpwire.FieldXForwardedProto:
			if !lb.cfg.TrustForwarded {
				continue
			}
			hasProto = true
		case httpwire.FieldXRequestID:
			if f.Value.End == f.Value.Start {
				continue
			}
			hasID = true
		}
		out = append(out, f.Line.Of(rb)...)
		out = append(out, "\r\n"...)
	}
	if !hasProto {
		out = append(out, "X-Forwarded-Proto: http\r\n"...)
	}
	if !hasID {
		out = append(out, "X-Request-Id: "...)
		ids.idStart = len(out)
		out = append(out, lb.idBase...)
		out = append(out, '-')
		out = strconv.AppendUint(out, lb.ids.Add(1), 36)
		ids.idEnd = len(out)
		out = append(out, "\r\n"...)
	}
	if sendTrace {
		out = append(out, "Traceparent: "...)
		ids.trace = len(out) + len("00-")
		out = sc.AppendTo(out)
		out = append(out, "\r\n"...)
	}
	out = append(out, lb.viaLine...)
	switch {
	case r.Chunked:
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	case r.ContentLength >= 0:
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, r.ContentLength, 10)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	cc.out = out
	return ids
}

// trace decides the traceparent the balancer sends on for r: a child of
// the client's (same trace, the balancer's own span as the parent), or a
// new trace when the client sent none usable and Config.TraceStart allows
// it. keepState says whether the client's tracestate goes on with it: not
// with a new trace, to which it does not belong. A request with two
// traceparent fields has none usable (W3C Trace Context, section 3.2).
// It allocates nothing.
func (lb *LB) trace(r *httpwire.Head) (sc tracectx.SpanContext, send, keepState bool) {
	var value []byte
	n := 0
	for i := range r.Fields {
		if f := &r.Fields[i]; f.Kind == httpwire.FieldTraceparent && !f.Hop {
			value = f.Value.Of(r.Buf)
			n++
		}
	}
	if n == 1 {
		if parent, err := tracectx.Parse(value); err == nil {
			return parent.Child(), true, true
		}
	}
	switch lb.cfg.TraceStart {
	case tracectx.StartSampled:
		return tracectx.New(true), true, false
	case tracectx.StartUnsampled:
		return tracectx.New(false), true, false
	}
	return sc, false, false
}

// send writes the request to uc: cc.out, then a streamed body.
func (cc *clientConn) send(uc *upConn, streamBody bool, touched *bool) error {
	if _, err := uc.bw.Write(cc.out); err != nil {
		return err
	}
	if streamBody {
		if err := uc.bw.Flush(); err != nil {
			return err
		}
		*touched = true
		if cc.req.Expect100 {
			_, _ = cc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := cc.bw.Flush(); err != nil {
				return httpwire.ReadError{Err: err}
			}
		}
		var err error
		if cc.req.Chunked {
			_, err = httpwire.CopyChunked(uc.bw, cc.br, true)
		} else {
			err = httpwire.CopyFixed(uc.bw, cc.br, cc.req.ContentLength)
		}
		if err != nil {
			return err
		}
	}
	return uc.bw.Flush()
}

// readResponseHead reads the backend's response head within
// ResponseHeaderTimeout, skipping interim 1xx responses.
func (lb *LB) readResponseHead(uc *upConn) error {
	_ = uc.nc.SetReadDeadline(time.Now().Add(lb.cfg.ResponseHeaderTimeout))
	for {
		if err := httpwire.ReadHead(uc.br, &uc.head, 64<<10, true); err != nil {
			return err
		}
		if s := uc.head.Status; s >= 200 {
			break
		} else if s == 101 {
			return errors.New("backend switched protocols")
		}
	}
	_ = uc.nc.SetReadDeadline(time.Time{})
	return nil
}

// discardResponse drops a response that will be retried elsewhere, keeping
// the connection when the body is small and already framed.
func (lb *LB) discardResponse(b *backend, uc *upConn, isHead bool) {
	h := &uc.head
	if httpwire.Bodyless(isHead, h.Status) {
		lb.release(b, uc)
		return
	}
	if !h.Chunked && h.ContentLength >= 0 && h.ContentLength <= 64<<10 && !h.Close {
		if _, err := uc.br.Discard(int(h.ContentLength)); err == nil {
			lb.release(b, uc)
			return
		}
	}
	uc.close()
}

func (lb *LB) release(b *backend, uc *upConn) {
	// Bytes past the response mean the backend is not speaking HTTP as
	// framed: the connection cannot carry another request.
	if uc.head.Close || (uc.head.HTTP10 && !uc.head.KeepAlive) || uc.br.Buffered() > 0 {
		uc.close()
		return
	}
	b.pool.put(uc, time.Now())
}

// Response body framings, as writeResponseHead chooses them.
const (
	bodyNone       = iota
	bodyFixed      // Content-Length
	bodyChunked    // chunked, passed on as it is
	bodyDechunk    // chunked, decoded for an HTTP/1.0 client
	bodyUntilClose // delimited by the backend closing the connection
)

// writeResponse writes the backend's response to the client and reports
// whether the client connection may be kept.
func (cc *clientConn) writeResponse(uc *upConn, b *backend, reqID, traceID []byte, isHead bool) bool {
	lb := cc.lb
	h := &uc.head
	bw := cc.bw
	mode, closeClient := cc.writeResponseHead(h, b, reqID, isHead)
	var err error
	switch mode {
	case bodyFixed:
		err = httpwire.CopyFixed(bw, uc.br, h.ContentLength)
	case bodyChunked:
		_, err = httpwire.CopyChunked(bw, uc.br, true)
	case bodyDechunk:
		_, err = httpwire.CopyChunked(bw, uc.br, false)
	case bodyUntilClose:
		err = httpwire.CopyUntilEOF(bw, uc.br)
	}
	if err != nil {
		uc.close()
		var re httpwire.ReadError
		if errors.As(err, &re) {
			// The backend broke mid-body. The client must not take a short
			// body for a whole one: the connection is closed without the
			// rest (and without a chunked body's last chunk).
			b.errors.Add(1)
			lb.passiveError(b)
			lb.log.Warn("lb response body cut", "backend", b.name, "request_id", string(reqID), "trace_id", string(traceID), "err", err)
		} else {
			lb.clientGone.Add(1)
		}
		return false
	}
	if mode == bodyUntilClose {
		uc.close()
	} else {
		lb.release(b, uc)
	}
	return !closeClient
}

// writeResponseHead writes the head of the backend's response h to cc.bw,
// as it goes to the client, and returns how the body is framed and whether the
// client connection must close after it.
func (cc *clientConn) writeResponseHead(h *httpwire.Head, b *backend, reqID []byte, isHead bool) (mode int, closeClient bool) {
	lb := cc.lb
	bw := cc.bw
	hb := h.Buf
	r := &cc.req
	mode = bodyUntilClose
	switch {
	case httpwire.Bodyless(isHead, h.Status):
		mode = bodyNone
	case h.Chunked && r.HTTP10:
		mode = bodyDechunk
	case h.Chunked:
		mode = bodyChunked
	case h.ContentLength >= 0:
		mode = bodyFixed
	}
	closeClient = r.Close || (r.HTTP10 && !r.KeepAlive) || lb.closing.Load() ||
		mode == bodyUntilClose || mode == bodyDechunk

	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(h.Rest.Of(hb))
	_, _ = bw.WriteString("\r\n")
	hasID, setsSession := false, false
	for i := range h.Fields {
		f := &h.Fields[i]
		if f.Hop && !(mode == bodyNone && f.Kind == httpwire.FieldContentLength) {
			continue
		}
		switch f.Kind {
		case httpwire.FieldXRequestID:
			hasID = true
		case httpwire.FieldSetCookie:
			if lb.cfg.Sticky && bytes.HasPrefix(f.Value.Of(hb), lb.stickyPrefix) {
				setsSession = true
			}
		}
		_, _ = bw.Write(f.Line.Of(hb))
		_, _ = bw.WriteString("\r\n")
	}
	switch mode {
	case bodyFixed:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), h.ContentLength, 10))
		_, _ = bw.WriteString("\r\n")
	case bodyChunked:
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, _ = bw.Write(lb.respLines)
	if !hasID && len(reqID) > 0 {
		_, _ = bw.WriteString("X-Request-Id: ")
		_, _ = bw.Write(reqID)
		_, _ = bw.WriteString("\r\n")
	}
	if setsSession {
		_, _ = bw.WriteString("Set-Cookie: ")
		_, _ = bw.WriteString(lb.cfg.AffinityCookie)
		_ = bw.WriteByte('=')
		_, _ = bw.WriteString(b.name)
		_, _ = bw.WriteString("; Path=/; HttpOnly; SameSite=Lax\r\n")
	}
	switch {
	case closeClient:
		_, _ = bw.WriteString("Connection: close\r\n")
	case r.HTTP10:
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	return mode, closeClient
}

// writePage answers a request no backend could, in JSON when the client
// accepts JSON and in HTML otherwise. traceID, when set, goes back as
// X-Trace-Id, as the app's answers do: the trace to grep the logs for.
func (cc *clientConn) writePage(code int, reason string, reqID, traceID []byte, closing, isHead bool) {
	lb := cc.lb
	json := false
	if accept, ok := cc.req.Value(httpwire.FieldAccept); ok && bytes.Contains(accept, []byte("json")) {
		json = true
	}
	text := statusText(code)
	var body []byte
	if json {
		body = append(body, `{"error":`...)
		body = strconv.AppendQuote(body, reason)
		body = append(body, `,"status":`...)
		body = strconv.AppendInt(body, int64(code), 10)
		body = append(body, `,"lb":`...)
		body = strconv.AppendQuote(body, lb.cfg.NodeName)
		body = append(body, `,"request_id":`...)
		body = strconv.AppendQuote(body, string(reqID))
		body = append(body, "}\n"...)
	} else {
		status := strconv.Itoa(code) + " " + text
		body = append(body, "<!doctype html>\n<html><head><title>"+status+"</title></head><body>\n<h1>"+status+"</h1>\n<p>"...)
		body = append(body, htmlEscape(reason)...)
		body = append(body, ". Please try again in a moment.</p>\n<p><small>load balancer "...)
		body = append(body, htmlEscape(lb.cfg.NodeName)...)
		if len(reqID) > 0 {
			body = append(body, ", request "...)
			body = append(body, htmlEscape(string(reqID))...)
		}
		body = append(body, "</small></p>\n</body></html>\n"...)
	}
	bw := cc.bw
	_, _ = bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
	if json {
		_, _ = bw.WriteString("Content-Type: application/json\r\n")
	} else {
		_, _ = bw.WriteString("Content-Type: text/html; charset=utf-8\r\n")
	}
	_, _ = bw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nCache-Control: no-store\r\n")
	if code == 503 {
		_, _ = bw.WriteString("Retry-After: 1\r\n")
	}
	_, _ = bw.Write(lb.respLines)
	if len(reqID) > 0 {
		_, _ = bw.WriteString("X-Request-Id: ")
		_, _ = bw.Write(reqID)
		_, _ = bw.WriteString("\r\n")
	}
	if len(traceID) > 0 {
		_, _ = bw.WriteString("X-Trace-Id: ")
		_, _ = bw.Write(traceID)
		_, _ = bw.WriteString("\r\n")
	}
	if closing {
		_, _ = bw.WriteString("Connection: close\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if !isHead {
		_, _ = bw.Write(body)
	}
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

func htmlEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '"':
			b = append(b, "&#34;"...)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// pick chooses the backend for the next attempt, skipping those tried.
func (lb *LB) pick(p *pool, cookies []byte, tried []*backend) *backend {
	list := p.eligible
	if len(list) == 0 {
		list = p.fallback
	}
	n := len(list)
	if n == 0 {
		return nil
	}
	if lb.cfg.Sticky && len(p.eligible) > 0 && len(cookies) > 0 {
		if b := lb.pickSticky(p, cookies, tried); b != nil {
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
func (lb *LB) pickSticky(p *pool, cookies []byte, tried []*backend) *backend {
	if v, ok := cookieValue(cookies, lb.cfg.AffinityCookie); ok {
		for _, b := range p.eligible {
			if string(v) == b.name && !contains(tried, b) {
				return b
			}
		}
	}
	if v, ok := cookieValue(cookies, lb.cfg.StickyCookie); ok && len(v) > 0 {
		if i := rendezvous(hashBytes(v), p.hashes); i >= 0 && !contains(tried, p.eligible[i]) {
			return p.eligible[i]
		}
	}
	return nil
}

// cookieValue finds name's value in a Cookie field ("a=1; b=2").
func cookieValue(cookies []byte, name string) ([]byte, bool) {
	for len(cookies) > 0 {
		var pair []byte
		if i := bytes.IndexByte(cookies, ';'); i >= 0 {
			pair, cookies = cookies[:i], cookies[i+1:]
		} else {
			pair, cookies = cookies, nil
		}
		pair = bytes.TrimSpace(pair)
		if len(pair) > len(name) && pair[len(name)] == '=' && string(pair[:len(name)]) == name {
			v := pair[len(name)+1:]
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return nil, false
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

// passiveError counts a connection error towards ejection.
func (lb *LB) passiveError(b *backend) {
	b.consec5xx.Store(0)
	if th := lb.cfg.EjectConsecutiveErrors; th > 0 && b.consecErrors.Add(1) >= int64(th) {
		lb.eject(b, "consecutive connection errors")
	}
}

// passiveResponse counts a response head towards ejection, or forgives
// past failures, by its outcome. Both transports call it.
func (lb *LB) passiveResponse(b *backend, h *httpwire.Head) {
	retryAfter := false
	if h.Status == 503 {
		v, _ := h.Value(httpwire.FieldRetryAfter)
		retryAfter = len(v) > 0
	}
	switch outcomeOf(h.Status, retryAfter) {
	case outcomeOK:
		lb.passiveOK(b)
	case outcomeDependency:
		b.responses5xx.Add(1)
		// The node answered, so it is reachable; its count of 5xx stands.
		if b.consecErrors.Load() != 0 {
			b.consecErrors.Store(0)
		}
	default:
		b.responses5xx.Add(1)
		lb.passive5xx(b)
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

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// closedByPeer reports whether err is the other side closing or resetting
// the connection.
func closedByPeer(err error) bool {
	return isEOF(err) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
