package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// web is the HTTP face of the app: routes, middleware, pages and API.
type web struct {
	a   *App
	svc Services
	cfg Config
	log *slog.Logger
	// keys names the cache tier's keys; fragments are used when the cache is on.
	keys      cacheKeys
	fragments bool

	assets   map[string]asset  // fingerprinted file name -> asset
	assetURL map[string]string // plain name -> /static/<fingerprinted>
	pages    map[string]*template.Template

	reqTotal *prometheus.CounterVec
	reqTime  *prometheus.HistogramVec
	limits   *limiter

	requests, errors, clientGone, inFlight, jobsDone, jobsFailed atomic.Int64
}

// statusClientClosed is the status a request is logged and counted with
// when its client went away before the answer: nginx's 499 ("client closed
// request"). No answer is written (nobody would read it), and it is not a
// failure of the app: a user who gave up on a paused store is counted
// apart from the 503s the store's absence causes.
const statusClientClosed = 499

// clientGone reports whether r's client went away: the server cancels a
// request's context when its connection closes.
func clientGone(r *http.Request) bool { return errors.Is(r.Context().Err(), context.Canceled) }

type asset struct {
	body  []byte
	ctype string
	etag  string
}

func newWeb(a *App) (*web, error) {
	w := &web{a: a, svc: a.svc, cfg: a.cfg, log: a.log,
		keys: cacheKeys{size: a.cfg.PageSize, pages: a.cfg.CachePages}, fragments: a.cfg.Cache == settings.On && a.tier != nil,
		assets: map[string]asset{}, assetURL: map[string]string{}, pages: map[string]*template.Template{},
		limits: newLimiter(a.cfg.RateLimit == settings.On, a.cfg.RateLimits, a.cfg.TrustedProxies)}
	if err := w.loadAssets(); err != nil {
		return nil, err
	}
	if err := w.loadTemplates(); err != nil {
		return nil, err
	}
	w.reqTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scalestack", Subsystem: "app", Name: "requests_total",
		Help: "HTTP requests served by the app, by route pattern and status code.",
	}, []string{"route", "code"})
	w.reqTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "scalestack", Subsystem: "app", Name: "request_duration_seconds",
		Help:    "Time to serve an HTTP request, by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route"})
	if a.metrics != nil {
		for _, c := range []prometheus.Collector{w.reqTotal, w.reqTime, w.limits} {
			if err := a.metrics.Register(c); err != nil {
				return nil, fmt.Errorf("app: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// loadAssets fingerprints each static file: its URL carries a hash of its
// content, so it can be cached for a year and a new version has a new URL.
func (w *web) loadAssets() error {
	return fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:])[:12]
		name := path.Base(p)
		ext := path.Ext(name)
		fp := strings.TrimSuffix(name, ext) + "." + hash + ext
		ctype := mime.TypeByExtension(ext)
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		w.assets[fp] = asset{body: body, ctype: ctype, etag: `"` + hash + `"`}
		w.assetURL[name] = "/static/" + fp
		return nil
	})
}

func (w *web) loadTemplates() error {
	funcs := template.FuncMap{
		"date":  func(t time.Time) string { return t.Format("Jan 2, 2006") },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"after": func(a, b time.Time) bool { return a.After(b) },
		"plural": func(n any, one, many string) string {
			if fmt.Sprint(n) == "1" {
				return one
			}
			return many
		},
		// ferr picks the message of one field out of a form's errors.
		"ferr": func(id string, errs map[string]string) any {
			if errs[id] == "" {
				return nil
			}
			return struct{ ID, Msg string }{id, errs[id]}
		},
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || strings.HasPrefix(base, "partial_") {
			continue
		}
		// Partials (partial_*.html) define pieces that any page may use.
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partial_*.html", n)
		if err != nil {
			return fmt.Errorf("app: parse template %s: %w", n, err)
		}
		w.pages[base] = t
	}
	return nil
}

// contentSecurityPolicy allows this site's own scripts and styles only;
// images may come from https sites too (Markdown image links).
const contentSecurityPolicy = "default-src 'self'; img-src 'self' https: data:; script-src 'self'; style-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// reqState is what one request carries through the handlers.
type reqState struct {
	trace store.Trace
	// trail collects the service instances the request's calls reached
	// (remote services), for X-Served-By.
	trail      *rpc.Trail
	cache      cachetier.Trace
	sess       *Session
	sessLoaded bool
	// sessErr is why the session could not be read (see web.session).
	sessErr error
}

type stateKey struct{}

// hops returns the service instances the request reached, in the order
// first reached.
func (st *reqState) hops() []string {
	if st.trail == nil {
		return nil
	}
	return st.trail.Hops()
}

func state(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	if st == nil {
		st = &reqState{sessLoaded: true}
	}
	return st
}

// respWriter adds the path headers (which service instances the request
// reached, which store node answered at which LSN, and whether the cache
// tier hit) just before the status goes out, and remembers the status for
// metrics.
type respWriter struct {
	http.ResponseWriter
	st     *reqState
	node   string // this app node's name, first in X-Served-By
	code   int
	wrote  bool
	isHEAD bool
}

func (rw *respWriter) WriteHeader(code int) {
	if rw.wrote {
		return
	}
	rw.wrote, rw.code = true, code
	if hops := rw.st.hops(); len(hops) > 0 {
		// This node, then every service instance the request's calls
		// reached, and those they called in turn (rpc.Trail).
		rw.Header().Set("X-Served-By", strings.Join(append([]string{rw.node}, hops...), ", "))
	}
	if node, lsns := rw.st.trace.Seen(); node != "" {
		h := rw.Header()
		h.Set("X-Store", node)
		// "123" for the default group alone, "123,content=45" with others
		// (store.LSNs, docs/api.md).
		h.Set("X-Store-LSN", lsns.String())
	}
	if r := rw.st.cache.Result(); r != 0 {
		rw.Header().Set("X-App-Cache", r.String())
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *respWriter) Write(b []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (w *web) handler() http.Handler {
	mux := http.NewServeMux()
	w.routes(mux)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.fail(rw, r, http.StatusForbidden, "cross-site request refused: send it from this site's own pages", "")
	}))
	inner := cop.Handler(mux)
	return http.HandlerFunc(func(rw0 http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.requests.Add(1)
		w.inFlight.Add(1)
		defer w.inFlight.Add(-1)
		st := &reqState{}
		// The request's span: a child of the caller's traceparent (the lb,
		// the edge), or a new trace when the app is the entry point. Every
		// log line made with the request's context carries its trace id,
		// and so do the store calls and the jobs it causes.
		span := incomingSpan(r.Header)
		ctx := tracectx.NewContext(r.Context(), span)
		ctx = context.WithValue(store.WithTrace(ctx, &st.trace), stateKey{}, st)
		ctx = cachetier.WithTrace(ctx, &st.cache)
		ctx, st.trail = rpc.WithTrail(ctx)
		r = r.WithContext(ctx)
		if w.cfg.Reads == ReadsReplicas {
			// Session reads: a replica serves only once it has applied the
			// user's last write (the client also raises the bar to the
			// LSN of this request's own writes, via the trace).
			var lsns store.LSNs
			if s := w.session(r); s != nil {
				lsns = s.LastLSNs
			}
			r = r.WithContext(store.WithConsistencyLSNs(r.Context(), store.Session, lsns))
		}
		rw := &respWriter{ResponseWriter: rw0, st: st, node: w.cfg.NodeName}
		h := rw.Header()
		h.Set("X-Served-By", w.cfg.NodeName)
		h.Set(HeaderTraceID, span.TraceID.String())
		// Defence in depth behind the escaping: no inline or foreign
		// scripts, no framing, no MIME sniffing.
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				w.log.ErrorContext(r.Context(), "app: panic serving request", "path", r.URL.Path, "panic", p)
				if !rw.wrote {
					w.fail(rw, r, http.StatusInternalServerError, "", "")
				}
			}
			code := rw.code
			switch {
			case !rw.wrote && clientGone(r):
				code = statusClientClosed
				w.clientGone.Add(1)
			case !rw.wrote:
				code = http.StatusOK
			case code >= 500:
				w.errors.Add(1)
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			took := time.Since(start)
			w.reqTotal.WithLabelValues(route, strconv.Itoa(code)).Inc()
			w.reqTime.WithLabelValues(route).Observe(took.Seconds())
			w.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("method", r.Method),
				slog.String("path", r.URL.Path), slog.Int("status", code), slog.Duration("took", took))
		}()
		inner.ServeHTTP(rw, r)
	})
}

// HeaderTraceID is the response field that names the request's trace id,
// so that a reader can grep every node's log for it (docs/api.md).
const HeaderTraceID = "X-Trace-Id"

// incomingSpan returns the span of a request with header h: a child of its
// traceparent, or a new sampled trace when it has none usable (two fields
// are none usable, W3C Trace Context section 3.2).
func incomingSpan(h http.Header) tracectx.SpanContext {
	if tp := h.Values(tracectx.HeaderTraceparent); len(tp) == 1 {
		sc, _ := tracectx.Continue(tp[0])
		return sc
	}
	return tracectx.New(true)
}

// isAPI reports whether r wants JSON answers.
func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

// classify maps an error from a service or the store to a status and a
// message safe to show. Anything unexpected is a 500 with no details; a
// dependency that cannot serve now (unavailable) is a 503, never a 500.
func classify(err error) (code int, msg, field string) {
	var fe *svc.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("the request is over the limit of %d bytes", mbe.Limit), ""
	case errors.As(err, &fe):
		code = http.StatusBadRequest
		if errors.Is(fe.Err, svc.ErrExists) {
			code = http.StatusConflict
		} else if errors.Is(fe.Err, svc.ErrTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		return code, fe.Field + " " + fe.Msg, fe.Field
	case errors.Is(err, errSearchDown):
		return http.StatusServiceUnavailable, "search is unavailable right now (the rest of the site works); try again in a moment", ""
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "the database is unreachable; retrying — try again in a moment", ""
	case errors.Is(err, store.ErrNotPrimary), errors.Is(err, store.ErrStaleEpoch), errors.Is(err, store.ErrBehind):
		// A failover is under way: the primary is changing hands.
		return http.StatusServiceUnavailable, "the database is changing its primary; try again in a moment", ""
	case errors.Is(err, store.ErrSyncTimeout):
		return http.StatusServiceUnavailable, "the database could not copy the write to a replica in time, so it may not be saved — check and try again", ""
	case errors.Is(err, rpc.ErrOutcomeUnknown):
		// A write to a service that got no answer, or whose store did not
		// confirm it: it may have been done.
		return http.StatusServiceUnavailable, "the change was sent but not confirmed in time, so it may or may not be saved — check and try again", ""
	case errors.Is(err, svc.ErrNotFound):
		return http.StatusNotFound, "not found", ""
	case errors.Is(err, svc.ErrBadCredentials):
		return http.StatusUnauthorized, svc.ErrBadCredentials.Error(), ""
	case errors.Is(err, svc.ErrForbidden):
		return http.StatusForbidden, "you may not change this", ""
	case errors.Is(err, svc.ErrUnsupported):
		return http.StatusUnsupportedMediaType, "the image must be PNG, JPEG or GIF", "image"
	case errors.Is(err, svc.ErrTooLarge), errors.Is(err, store.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too large", ""
	case errors.Is(err, svc.ErrConflict):
		return http.StatusConflict, "the post changed while saving; try again", ""
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "the database or a service did not answer in time; try again in a moment", ""
	case serviceUnavailable(err):
		return http.StatusServiceUnavailable, "a service this page needs is unavailable right now; try again in a moment", ""
	}
	return http.StatusInternalServerError, "", ""
}

// errSearchDown marks a search that failed because the search service
// cannot serve now: the search page says so in its own body (200), the
// API answers 503, and nothing else breaks.
var errSearchDown = errors.New("search is unavailable")

// unavailable reports whether err says that a dependency of the app cannot
// serve now (the store failing over or out of reach, a service down),
// rather than that the request or the app is wrong: the part of a page it
// was for is left out when the page can do without it, and the answer is a
// 503 with Retry-After when it cannot.
func unavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotPrimary) ||
		errors.Is(err, store.ErrStaleEpoch) || errors.Is(err, store.ErrBehind) ||
		errors.Is(err, context.DeadlineExceeded) || serviceUnavailable(err)
}

// serviceUnavailable reports whether err is a remote service's outage as
// its rpc client returns it: rpc.ErrUnavailable (no instance known, every
// instance's breaker open, the one asked refused the call or said its store
// group is down), or a call that got no answer from any instance it was
// sent to (the transport's *url.Error: a connection reset, a process gone
// mid-call). A call's deadline running out is context.DeadlineExceeded,
// which unavailable counts too.
func serviceUnavailable(err error) bool {
	var ue *url.Error
	return errors.Is(err, rpc.ErrUnavailable) || errors.As(err, &ue)
}

// error answers r with the status and message err maps to, logging what
// the user does not see.
//
// A request whose client went away failed because of that (the store
// client's call ended with the request's context): nothing of the app's
// broke, and nobody reads an answer. It is logged at debug, one line per
// request like the access log, and counted as 499, not as a 503 (during a
// paused store, every abandoned request would otherwise be an ERROR line).
func (w *web) error(rw http.ResponseWriter, r *http.Request, err error) {
	if clientGone(r) {
		w.log.DebugContext(r.Context(), "app: client gave up", "method", r.Method, "path", r.URL.Path, "status", statusClientClosed, "err", err)
		return
	}
	code, msg, field := classify(err)
	if code >= 500 {
		w.log.ErrorContext(r.Context(), "app: request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	heading := ""
	if code == http.StatusServiceUnavailable && !storeTrouble(err) {
		// A service's outage, not the database's.
		heading = "Temporarily unavailable"
	}
	w.failHeading(rw, r, code, heading, msg, field)
}

// storeTrouble reports whether err is one of the store's own (the app's
// store in local mode): the 503 page then says the database is unreachable.
func storeTrouble(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotPrimary) ||
		errors.Is(err, store.ErrStaleEpoch) || errors.Is(err, store.ErrBehind) || errors.Is(err, store.ErrSyncTimeout)
}

// retryAfter is the Retry-After of every 503, in seconds. The app answers
// 503 only when a dependency (the store, a service) cannot serve the
// request, never for a fault of its own, and says when to come back: a
// failover takes 2-3 s, a service instance's breaker holds calls off 5 s. The load balancer reads the field as "this node is up, its store is
// not" and does not eject the node for such answers (docs/lb.md).
const retryAfter = "2"

// fail writes an error response: JSON for the API, the error page otherwise.
// Messages never carry internals: a 500 says only that something broke.
func (w *web) fail(rw http.ResponseWriter, r *http.Request, code int, msg, field string) {
	w.failHeading(rw, r, code, "", msg, field)
}

// failHeading is fail with the error page's heading given ("": the
// status's own).
func (w *web) failHeading(rw http.ResponseWriter, r *http.Request, code int, heading, msg, field string) {
	if msg == "" {
		msg = "something went wrong on our side; it has been logged"
	}
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	if code == http.StatusServiceUnavailable {
		h.Set("Retry-After", retryAfter)
	}
	if isAPI(r) {
		body := map[string]string{"error": msg}
		if field != "" {
			body["field"] = field
		}
		w.writeJSON(rw, code, body)
		return
	}
	if heading == "" {
		heading = map[int]string{
			400: "That did not work", 401: "Please log in", 403: "Not allowed", 404: "Page not found",
			409: "Conflict", 413: "Too large", 415: "Unsupported file", 429: "Too many attempts", 500: "Something broke",
			503: "The database is unreachable",
		}[code]
	}
	if heading == "" {
		heading = http.StatusText(code)
	}
	if code == http.StatusNotFound && msg == "not found" {
		msg = "There is nothing at this address. It may have been deleted, or the link may be mistyped."
	}
	d := w.data(r, heading)
	d.Heading, d.Error = heading, msg
	var buf bytes.Buffer
	if err := w.pages["error"].ExecuteTemplate(&buf, "layout", d); err != nil {
		w.log.ErrorContext(r.Context(), "app: render error page", "err", err)
		http.Error(rw, msg, code)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(code)
	_, _ = rw.Write(buf.Bytes())
}
