package cdn

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

// flight is one origin request that concurrent misses for the same key wait
// for, instead of each sending their own.
type flight struct {
	done chan struct{}
	// obj is the response to share, set before done closes. Nil means the
	// response could not be stored (or the origin failed): each waiter then
	// uses its own stale copy where stale-if-error allows, or goes to the
	// origin itself, since an uncacheable response may be meant for the
	// leader's client alone.
	obj   *object
	label []string
	// failed says the origin failed (an error or a 5xx).
	failed bool
}

// join returns the flight for key and whether the caller leads it (and must
// finish it).
func (e *Edge) join(key string) (*flight, bool) {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if f, ok := e.flights[key]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	e.flights[key] = f
	return f, true
}

// finish publishes the flight's result and releases its waiters. It is safe
// to call more than once; only the first call counts.
func (e *Edge) finish(key string, f *flight, obj *object, label []string, failed bool) {
	if f == nil {
		return
	}
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if e.flights[key] != f {
		return
	}
	delete(e.flights, key)
	f.obj, f.label, f.failed = obj, label, failed
	close(f.done)
}

// serveCacheable answers a GET or HEAD from the store when it may, and
// otherwise through one coalesced origin request.
func (e *Edge) serveCacheable(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	uri := requestURI(r)
	var reqCC httpcache.Directives
	pragma := false
	if cc := r.Header["Cache-Control"]; len(cc) > 0 {
		reqCC = httpcache.ParseCacheControl(cc)
	} else if len(r.Header["Pragma"]) > 0 {
		pragma = r.Header.Get("Pragma") == "no-cache"
	}
	ranged := r.Method == http.MethodGet && len(r.Header["Range"]) > 0

	o, key := e.store.lookup(uri, r.Header, now)
	if o != nil {
		switch httpcache.Choose(reqCC, o.cc, pragma, o.lifetime, o.currentAge(now)) {
		case httpcache.Use:
			e.hits.Add(1)
			e.serveObject(w, r, o, e.hit, now, nil)
			return
		case httpcache.UseStale:
			e.stales.Add(1)
			e.revalidateInBackground(r, uri, key, o)
			e.serveObject(w, r, o, e.stale, now, nil)
			return
		}
	}
	if reqCC.OnlyIfCached {
		// RFC 9111 §5.2.1.7: a stored response that may be used, or 504.
		e.note(w, &e.misses)
		http.Error(w, "edge: not in cache (only-if-cached)", http.StatusGatewayTimeout)
		return
	}
	if ranged {
		// A range of something the edge does not hold fresh goes to the
		// origin as asked, and is not stored.
		e.pass(w, r)
		return
	}

	f, leader := e.join(key)
	if leader {
		e.fill(w, r, uri, key, f, o, reqCC)
		return
	}
	e.coalesced.Add(1)
	select {
	case <-f.done:
	case <-r.Context().Done():
		return
	}
	now = time.Now()
	if f.obj != nil && f.obj.matches(r.Header) {
		e.countLabel(f.label)
		e.serveObject(w, r, f.obj, f.label, now, nil)
		return
	}
	if f.failed && o != nil && httpcache.StaleIfError(reqCC, o.cc, o.lifetime, o.currentAge(now)) {
		e.stales.Add(1)
		e.serveObject(w, r, o, e.stale, now, nil)
		return
	}
	e.fill(w, r, uri, key, nil, o, reqCC)
}

func (e *Edge) countLabel(label []string) {
	switch label[0] {
	case Revalidated:
		e.revalidations.Add(1)
	case Stale:
		e.stales.Add(1)
	default:
		e.misses.Add(1)
	}
}

// revalidateInBackground refreshes a stale object that was just served
// within its stale-while-revalidate window, unless a fetch for it is
// already under way. The goroutine belongs to the edge, not the request.
func (e *Edge) revalidateInBackground(r *http.Request, uri, key string, stale *object) {
	f, leader := e.join(key)
	if !leader {
		return
	}
	// The request is the client's and ends with its handler: copy what the
	// fetch needs.
	bg := &http.Request{
		Method:     http.MethodGet,
		URL:        r.URL,
		Host:       r.Host,
		Header:     r.Header.Clone(),
		RemoteAddr: r.RemoteAddr,
		Body:       http.NoBody,
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.OriginTimeout)
		defer cancel()
		e.fill(discard{}, bg.WithContext(ctx), uri, key, f, stale, httpcache.Directives{})
	}()
}

// fill fetches the response for a GET or HEAD from the origin, stores it
// when the rules allow, answers the client and, as leader of flight f
// (when not nil), shares the result with the waiters. stale is the stored
// response being replaced, if any: its validators make the request
// conditional, and it stands in when the origin fails and stale-if-error
// allows.
func (e *Edge) fill(w http.ResponseWriter, r *http.Request, uri, key string, f *flight, stale *object, reqCC httpcache.Directives) {
	// Waiters must never hang, whatever happens below.
	defer e.finish(key, f, nil, nil, true)

	// A leader's fetch outlives its client, since the waiters need it; it
	// ends with the edge. A lone fetch ends with its client.
	parent := r.Context()
	if f != nil {
		parent = e.ctx
	}
	ctx, cancel := context.WithTimeout(parent, e.cfg.OriginTimeout)
	defer cancel()

	out := e.outbound(ctx, r, true, stale)
	reqTime := time.Now()
	resp, err := e.roundTrip(ctx, out)
	now := time.Now()
	if err != nil || isServerError(resp.StatusCode) {
		if stale != nil && httpcache.StaleIfError(reqCC, stale.cc, stale.lifetime, stale.currentAge(now)) {
			if resp != nil {
				resp.Body.Close()
			}
			e.finish(key, f, nil, nil, true)
			e.note(w, &e.stales)
			e.serveObject(w, r, stale, e.stale, now, nil)
			return
		}
		e.finish(key, f, nil, nil, true)
		if err != nil {
			e.note(w, &e.misses)
			e.originError(w, err)
			return
		}
	}
	defer resp.Body.Close()

	if resp.StatusCode == http.StatusNotModified && stale != nil {
		etag := resp.Header.Get("Etag")
		if etag == "" || stale.etag == "" || etag == stale.etag {
			o := stale.updated(out.Header, resp.Header, reqTime, now, e.cfg.NodeName)
			e.store.put(o, o.staleDeadline(e.cfg.KeepStale), now)
			e.finish(key, f, o, e.reval, false)
			e.note(w, &e.revalidations)
			ownTraceID(w, resp.Header)
			e.serveObject(w, r, o, e.reval, now, nil)
			return
		}
		// The 304 confirms some other response than the one held: forget
		// it and ask again without conditions.
		resp.Body.Close()
		e.store.remove(stale, now)
		e.fill(w, r, uri, key, f, nil, reqCC)
		return
	}

	respCC := httpcache.ParseCacheControl(resp.Header["Cache-Control"])
	ok, why := httpcache.Storable(out.Header, reqCC, resp.StatusCode, resp.Header, respCC)
	if ok && resp.ContentLength > e.cfg.MaxObjectBytes {
		ok, why = false, "too large"
		e.tooLarge.Add(1)
	}
	if !ok {
		e.notStored.Add(1)
		if stale != nil {
			// A new response replaces the stored one (RFC 9111 §4.3.3),
			// even when it may not be stored itself.
			e.store.remove(stale, now)
		}
		e.finish(key, f, nil, nil, isServerError(resp.StatusCode))
		e.note(w, &e.misses)
		e.log.Debug("edge not storing", "uri", uri, "status", resp.StatusCode, "why", why)
		e.stream(w, r, resp, nil)
		return
	}

	body, complete, err := e.readBody(resp)
	if err != nil {
		e.finish(key, f, nil, nil, true)
		e.note(w, &e.misses)
		e.originError(w, err)
		return
	}
	if !complete {
		// Longer than it said, or it did not say: too large to store.
		e.tooLarge.Add(1)
		e.finish(key, f, nil, nil, false)
		e.note(w, &e.misses)
		e.stream(w, r, resp, body)
		return
	}
	o := newObject(uri, out.Header, resp.StatusCode, resp.Header, body, reqTime, now, e.cfg.NodeName)
	e.store.put(o, o.staleDeadline(e.cfg.KeepStale), now)
	e.finish(key, f, o, e.miss, false)
	e.note(w, &e.misses)
	// A cookie set by the origin goes to the client whose request drew
	// it, never into the store or to the waiters; so does the trace id.
	ownTraceID(w, resp.Header)
	e.serveObject(w, r, o, e.miss, now, resp.Header["Set-Cookie"])
}

// ownTraceID gives the client whose request went to the origin the
// X-Trace-Id of the origin's answer (the app's), which the stored object
// does not keep: a request answered from the store later has none.
func ownTraceID(w http.ResponseWriter, h http.Header) {
	if v := h["X-Trace-Id"]; len(v) > 0 {
		w.Header()["X-Trace-Id"] = v
	}
}

// readBody reads up to MaxObjectBytes of a response body. complete is false
// when there was more; the bytes read so far are then returned and the rest
// is still in resp.Body.
func (e *Edge) readBody(resp *http.Response) (body []byte, complete bool, err error) {
	limit := e.cfg.MaxObjectBytes
	size := int64(512)
	if resp.ContentLength >= 0 {
		size = resp.ContentLength + 1 // +1 sees the end without growing
	}
	buf := make([]byte, 0, min(size, limit+1))
	for {
		if int64(len(buf)) > limit {
			return buf, false, nil
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := resp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			if int64(len(buf)) > limit {
				return buf, false, nil
			}
			// Trim the spare capacity so the budget counts what is held.
			if cap(buf)-len(buf) > 64 {
				buf = append([]byte(nil), buf...)
			}
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

func isServerError(status int) bool {
	return status == 500 || status == 502 || status == 503 || status == 504
}

// discard is the ResponseWriter of a background revalidation, which has no
// client.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

// note counts an outcome for a client; a background revalidation was
// already counted as the STALE response that started it.
func (e *Edge) note(w http.ResponseWriter, c *atomic.Uint64) {
	if _, bg := w.(discard); !bg {
		c.Add(1)
	}
}
