package cdn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Open on an edge that was closed.
var ErrClosed = errors.New("edge: closed")

// purgePath is where the HTTP purge endpoint listens on the edge port.
const purgePath = "/_edge/purge"

// X-Cache values.
const (
	Hit         = "HIT"         // served from a fresh stored response
	Miss        = "MISS"        // fetched from the origin (or passed through)
	Stale       = "STALE"       // served stale: revalidating in the background, or the origin failed
	Revalidated = "REVALIDATED" // the origin confirmed the stored response with 304
)

// Edge is the caching reverse proxy. Create it with New, start it with Open,
// stop it with Close.
type Edge struct {
	cfg    Config
	log    *slog.Logger
	store  *store
	origin *url.URL // fixed origin, or nil
	// origins yields the origins when origin is nil; purges delivers
	// purge messages, nil for none (both from Deps).
	origins Origins
	purges  Purges
	tr      *http.Transport
	rr      atomic.Uint64

	// Precomputed header values, shared read-only by every response.
	xEdge        []string
	via          string
	hit, miss    []string
	stale, reval []string

	fmu     sync.Mutex
	flights map[string]*flight

	bufPool sync.Pool

	counters

	srv       *server
	ln        net.Listener
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // serve, maintain and background revalidations
	stopPurge func()
	opened    atomic.Bool
	closing   atomic.Bool
	closeMu   sync.Mutex
	closed    bool
	closeErr  error
}

// counters are the edge's live figures, read by Status and the collector.
type counters struct {
	requests       atomic.Uint64
	hits           atomic.Uint64
	misses         atomic.Uint64
	stales         atomic.Uint64
	revalidations  atomic.Uint64
	passes         atomic.Uint64 // requests sent past the cache (unsafe methods, ranges, pass cookie)
	originRequests atomic.Uint64
	originErrors   atomic.Uint64
	coalesced      atomic.Uint64
	notStored      atomic.Uint64 // origin responses the rules forbade storing
	tooLarge       atomic.Uint64 // bodies over MaxObjectBytes, streamed
	purgeRequests  atomic.Uint64
	purgedObjects  atomic.Uint64
	invalidations  atomic.Uint64
	bytesOut       atomic.Uint64 // body bytes sent from stored responses
}

// ErrNoOrigin is returned by New when neither Config.Origin nor
// Deps.Origins says where misses go.
var ErrNoOrigin = errors.New("no origin: give Config.Origin (--edge-origin) or Deps.Origins")

// New checks cfg and deps and returns an edge that is not yet listening.
func New(cfg Config, deps Deps) (*Edge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new edge: %w", err)
	}
	if cfg.Origin == "" && deps.Origins == nil {
		return nil, fmt.Errorf("new edge: %w", ErrNoOrigin)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Edge{
		cfg:     cfg,
		origins: deps.Origins,
		purges:  deps.Purges,
		log:     log,
		store:   newStore(cfg.MaxBytes),
		xEdge:   []string{cfg.NodeName},
		via:     "1.1 " + cfg.NodeName,
		hit:     []string{Hit},
		miss:    []string{Miss},
		stale:   []string{Stale},
		reval:   []string{Revalidated},
		flights: make(map[string]*flight),
	}
	if cfg.Origin != "" {
		e.origin, _ = url.Parse(cfg.Origin) // checked by Validate
	}
	e.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   cfg.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.OriginTimeout,
		// The edge stores what the origin sends, encoded or not; the
		// transport must not ask for gzip and decode it behind our back.
		DisableCompression: true,
	}
	e.bufPool.New = func() any { b := make([]byte, 32<<10); return &b }
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if deps.Metrics != nil {
		if err := deps.Metrics.Register(&collector{e: e}); err != nil {
			return nil, fmt.Errorf("new edge: register metrics: %w", err)
		}
	}
	return e, nil
}

// Open binds the listener, subscribes to purges and serves. It returns once
// the edge accepts connections.
func (e *Edge) Open() error {
	if e.closing.Load() {
		return ErrClosed
	}
	if !e.opened.CompareAndSwap(false, true) {
		return errors.New("open edge: already open")
	}
	ln, err := net.Listen("tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("open edge: %w", err)
	}
	if e.purges != nil {
		stop, err := e.purges.Subscribe(PurgeSubject, e.purgeMessage, e.purgesMissed)
		if err != nil {
			ln.Close()
			return fmt.Errorf("open edge: subscribe %s: %w", PurgeSubject, err)
		}
		e.stopPurge = stop
	}
	e.ln = ln
	e.srv = newServer(e, ln)
	e.srv.wg.Add(1)
	go e.srv.serve()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.maintain()
	}()
	e.log.Info("edge listening", "addr", ln.Addr().String(), "origin", e.cfg.Origin,
		"max_bytes", e.cfg.MaxBytes, "origin_latency", e.cfg.OriginLatency)
	return nil
}

// Addr is the bound listen address, or the configured one before Open.
func (e *Edge) Addr() string {
	if e.ln != nil {
		return e.ln.Addr().String()
	}
	return e.cfg.Addr
}

// Ready reports whether the edge is serving and knows an origin.
func (e *Edge) Ready() bool {
	if !e.opened.Load() || e.closing.Load() {
		return false
	}
	if p, ok := e.purges.(interface{ Subscribed() bool }); ok && !p.Subscribed() {
		return false
	}
	return e.origin != nil || len(e.origins.Origins()) > 0
}

// Close shuts down gracefully within Config.DrainTimeout; see Shutdown.
func (e *Edge) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DrainTimeout)
	defer cancel()
	return e.Shutdown(ctx)
}

// Shutdown stops accepting connections and lets in-flight requests finish
// until ctx ends (then closes their connections). Only then does it stop
// background revalidations, the purge subscription and idle origin
// connections: requests still being answered may need all three, and a
// purge that arrives while draining must still apply.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return e.closeErr
	}
	e.closed = true
	e.closing.Store(true)
	if !e.opened.Load() {
		e.cancel()
		return nil
	}
	e.log.Info("edge draining")
	err := e.srv.shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("close edge: drain: %w", err)
	}
	e.cancel()
	e.wg.Wait()
	if e.stopPurge != nil {
		e.stopPurge()
	}
	e.tr.CloseIdleConnections()
	e.closeErr = err
	e.log.Info("edge closed")
	return err
}

// maintain removes expired objects nobody asks for, until the edge closes.
func (e *Edge) maintain() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-tick.C:
			e.store.expire(now)
		}
	}
}

// ServeHTTP answers one client request.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if r.URL.Path == purgePath {
			http.Error(w, "edge: purge takes POST", http.StatusMethodNotAllowed)
			return
		}
		if e.mustPass(r) {
			e.pass(w, r)
			return
		}
		e.serveCacheable(w, r)
	case "PURGE":
		e.servePurgeMethod(w, r)
	case http.MethodPost:
		if r.URL.Path == purgePath {
			e.servePurge(w, r)
			return
		}
		e.pass(w, r)
	default:
		e.pass(w, r)
	}
}

// mustPass reports whether a GET or HEAD goes past the cache: it carries
// preconditions meant for the origin (RFC 9111 §4.3.2), or the configured
// pass cookie.
func (e *Edge) mustPass(r *http.Request) bool {
	h := r.Header
	if len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0 {
		return true
	}
	if e.cfg.PassCookie != "" && len(h["Cookie"]) > 0 {
		if _, err := r.Cookie(e.cfg.PassCookie); err == nil {
			return true
		}
	}
	return false
}

// requestURI is the cache's primary key for r: its path and query.
func requestURI(r *http.Request) string {
	if u := r.RequestURI; len(u) > 0 && u[0] == '/' {
		return u
	}
	return r.URL.RequestURI()
}
