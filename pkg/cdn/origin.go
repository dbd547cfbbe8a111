package cdn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

// errNoOrigin is returned when membership lists no origin.
var errNoOrigin = errors.New("no origin known")

// pickOrigin returns the scheme and host of the next origin, round robin.
func (e *Edge) pickOrigin() (scheme, host string, err error) {
	if e.origin != nil {
		return e.origin.Scheme, e.origin.Host, nil
	}
	list := e.origins.Origins()
	if len(list) == 0 {
		return "", "", errNoOrigin
	}
	return "http", list[int(e.rr.Add(1)%uint64(len(list)))], nil
}

// outbound builds the request to send to an origin for r. For a cache fill
// the method is GET (a HEAD miss fetches the whole response, to store it),
// the client's own conditions and Range are dropped (the edge answers them
// from what it stores) and stale's validators are added. The origin is
// chosen when the request is sent.
func (e *Edge) outbound(ctx context.Context, r *http.Request, fill bool, stale *object) *http.Request {
	h := r.Header.Clone()
	removeHopByHop(h)
	method := r.Method
	body := r.Body
	contentLength := r.ContentLength
	if fill {
		method = http.MethodGet
		body, contentLength = http.NoBody, 0
		for _, f := range [...]string{"If-None-Match", "If-Modified-Since", "If-Range", "Range"} {
			delete(h, f)
		}
		if stale != nil {
			if stale.etag != "" {
				h["If-None-Match"] = []string{stale.etag}
			}
			if stale.lastModified != "" {
				h["If-Modified-Since"] = []string{stale.lastModified}
			}
		}
	}
	e.trace(h)
	h["Via"] = appendVia(h["Via"], e.via)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = []string{ip}
	}
	if len(h["X-Forwarded-Proto"]) == 0 {
		h["X-Forwarded-Proto"] = []string{"http"}
	}
	if len(h["X-Forwarded-Host"]) == 0 && r.Host != "" {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
	u := &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if body == nil {
		body = http.NoBody
	}
	out := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: contentLength,
		Host:          r.Host,
		RemoteAddr:    r.RemoteAddr,
	}
	return out.WithContext(ctx)
}

// trace replaces the traceparent of h, a request on its way to the origin,
// by a child of it (the same trace, the edge's own span as the parent), or
// starts a trace when there is none usable and Config.TraceStart allows
// it; the tracestate of an unusable one goes with it. Two traceparent
// fields are none usable (W3C Trace Context, section 3.2).
func (e *Edge) trace(h http.Header) {
	if tp := h["Traceparent"]; len(tp) == 1 {
		if parent, err := tracectx.Parse(tp[0]); err == nil {
			h["Traceparent"] = []string{parent.Child().String()}
			return
		}
	}
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	switch e.cfg.TraceStart {
	case tracectx.StartSampled:
		h["Traceparent"] = []string{tracectx.New(true).String()}
	case tracectx.StartUnsampled:
		h["Traceparent"] = []string{tracectx.New(false).String()}
	}
}

// roundTrip sends out to an origin after the simulated distance.
func (e *Edge) roundTrip(ctx context.Context, out *http.Request) (*http.Response, error) {
	scheme, host, err := e.pickOrigin()
	if err != nil {
		e.originErrors.Add(1)
		return nil, err
	}
	out.URL.Scheme, out.URL.Host = scheme, host
	if e.cfg.OriginLatency > 0 {
		t := time.NewTimer(e.cfg.OriginLatency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	e.originRequests.Add(1)
	resp, err := e.tr.RoundTrip(out)
	if err != nil {
		if !errors.Is(err, context.Canceled) { // else the client went away: no fault of the origin
			e.originErrors.Add(1)
		}
		return nil, fmt.Errorf("origin %s: %w", host, err)
	}
	if isServerError(resp.StatusCode) {
		e.originErrors.Add(1)
	}
	return resp, nil
}

// pass sends a request past the cache and streams the answer back. An
// unsafe method answered without error invalidates what the edge holds for
// its URL and for the Location and Content-Location of the answer on the
// same host (RFC 9111 §4.4).
func (e *Edge) pass(w http.ResponseWriter, r *http.Request) {
	e.passes.Add(1)
	e.misses.Add(1)
	out := e.outbound(r.Context(), r, false, nil)
	resp, err := e.roundTrip(r.Context(), out)
	if err != nil {
		e.originError(w, err)
		return
	}
	defer resp.Body.Close()
	if httpcache.Invalidates(r.Method, resp.StatusCode) {
		e.invalidate(r, resp.Header)
	}
	e.stream(w, r, resp, nil)
}

func (e *Edge) invalidate(r *http.Request, h http.Header) {
	now := time.Now()
	n := e.store.purgeURL(requestURI(r), now)
	for _, f := range [...]string{"Location", "Content-Location"} {
		v := h.Get(f)
		if v == "" {
			continue
		}
		u, err := r.URL.Parse(v)
		if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, r.Host)) {
			continue
		}
		n += e.store.purgeURL(u.RequestURI(), now)
	}
	e.invalidations.Add(1)
	e.purgedObjects.Add(uint64(n))
}

// stream copies an origin response that is not stored to the client: the
// header less hop-by-hop fields and Surrogate-Key, then head (bytes already
// read) and the rest of the body.
func (e *Edge) stream(w http.ResponseWriter, r *http.Request, resp *http.Response, head []byte) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	removeHopByHop(h)
	delete(h, "Surrogate-Key")
	h["Via"] = appendVia(h["Via"], e.via)
	h["X-Cache"] = e.miss
	h["X-Edge"] = e.xEdge
	if resp.ContentLength >= 0 {
		h["Content-Length"] = []string{fmt.Sprint(resp.ContentLength)}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	if len(head) > 0 {
		if _, err := w.Write(head); err != nil {
			return
		}
	}
	bp := e.bufPool.Get().(*[]byte)
	defer e.bufPool.Put(bp)
	_, err := io.CopyBuffer(flushWriter{w}, resp.Body, *bp)
	if err != nil && r.Context().Err() == nil {
		e.log.Debug("edge stream cut", "uri", r.URL.Path, "err", err)
	}
}

// flushWriter flushes after each write, so that a slow origin's bytes
// reach the client as they come rather than when a buffer fills.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// originError answers a request the origin could not: 504 when it timed
// out, 502 otherwise. A request canceled because its client went away
// (the origin fetch ends with the client's context unless waiters share
// it) is no failure of the origin: it is logged at debug and answered with
// nothing, since nobody would read it.
func (e *Edge) originError(w http.ResponseWriter, err error) {
	if _, bg := w.(discard); bg {
		e.log.Debug("edge background revalidation failed", "err", err)
		return
	}
	if errors.Is(err, context.Canceled) {
		e.log.Debug("edge: client gave up", "status", 499, "err", err)
		return
	}
	e.log.Warn("edge origin request failed", "err", err)
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		http.Error(w, "edge: the origin did not answer in time", http.StatusGatewayTimeout)
		return
	}
	http.Error(w, "edge: the origin is unreachable", http.StatusBadGateway)
}
