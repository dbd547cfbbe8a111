package lb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/retrybudget"
)

// ErrClosed is returned by Open on a balancer that was closed.
var ErrClosed = errors.New("lb: closed")

// windowPeriod is how long a latency window lasts; Status reports the
// quantiles of the last one to two windows.
const windowPeriod = 10 * time.Second

// LB is the load balancer. Create it with New, start it with Open, stop it
// with Close (or Shutdown for a caller's deadline).
type LB struct {
	cfg  Config
	log  *slog.Logger
	disc Discovery

	// Precomputed header lines, shared read-only by every request.
	viaLine      []byte // "Via: 1.1 <node>\r\n"
	respLines    []byte // "X-LB: <node>\r\nVia: 1.1 <node>\r\n"
	stickyPrefix []byte // "<StickyCookie>="
	idBase       string

	dialer *net.Dialer
	budget *retrybudget.Budget
	rr     atomic.Uint64
	ids    atomic.Uint64

	// mu guards backends, wmu and the rebuilding of pool.
	mu       sync.Mutex
	backends map[string]*backend
	pool     atomic.Pointer[pool]
	wmu      sync.Mutex // guards the current pool's smooth weighted state

	requests      atomic.Uint64
	retries       atomic.Uint64
	retriesDenied atomic.Uint64
	failed        [3]atomic.Uint64 // answered 502, 503, 504 by the balancer
	clientGone    atomic.Uint64

	ln        net.Listener
	loops     []*loop // event loops (loop_linux.go); nil when each connection has a goroutine
	nextLoop  uint64  // the loop the next accepted connection goes to
	connMu    sync.Mutex
	conns     map[*clientConn]struct{}
	connWG    sync.WaitGroup // one per client connection (connOpened, connClosed)
	connsOpen atomic.Int64   // client connections open
	slots     chan struct{}  // one per client connection, up to Config.MaxConns
	handOffs  atomic.Uint64  // connections an event loop handed to a goroutine
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the server and maintain goroutines
	checks    sync.WaitGroup // one health-check goroutine per backend
	opened    atomic.Bool
	closing   atomic.Bool
	closeMu   sync.Mutex // guards closed and closeErr; held by Open and Shutdown
	closeErr  error
	closed    bool
}

// pool is an immutable snapshot of the backends, rebuilt whenever one of
// them changes state, so that picking a backend takes no lock.
type pool struct {
	all      []*backend // every known backend, sorted by name
	eligible []*backend // healthy, not draining, not ejected
	weights  []int      // weights of eligible
	hashes   []uint64   // name hashes of eligible, for session affinity
	// fallback is used when nothing is eligible: backends that pass their
	// health checks but are ejected (Envoy's panic mode), so that ejection
	// alone never turns the whole pool away.
	fallback []*backend
	swrr     smoothWeighted
}

// ErrNoBackends is returned by New when neither Deps.Discovery nor
// Config.Backends says where the backends are.
var ErrNoBackends = errors.New("no backends: give Deps.Discovery or Config.Backends (--lb-backends)")

// New checks cfg and deps and returns a balancer that is not yet listening.
func New(cfg Config, deps Deps) (*LB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new lb: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	disc := deps.Discovery
	if disc == nil {
		if len(cfg.Backends) == 0 {
			return nil, fmt.Errorf("new lb: %w", ErrNoBackends)
		}
		disc = NewStaticDiscovery(cfg.Backends...)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("new lb: request id seed: %w", err)
	}
	lb := &LB{
		cfg:          cfg,
		log:          log,
		disc:         disc,
		viaLine:      []byte("Via: 1.1 " + cfg.NodeName + "\r\n"),
		respLines:    []byte("X-LB: " + cfg.NodeName + "\r\nVia: 1.1 " + cfg.NodeName + "\r\n"),
		stickyPrefix: []byte(cfg.StickyCookie + "="),
		idBase:       hex.EncodeToString(rnd[:]),
		dialer:       &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		budget:       retrybudget.New(cfg.RetryBudgetRatio, cfg.RetryMinPerSecond),
		backends:     make(map[string]*backend),
		conns:        make(map[*clientConn]struct{}),
		slots:        make(chan struct{}, cfg.MaxConns),
	}
	lb.pool.Store(&pool{})
	lb.ctx, lb.cancel = context.WithCancel(context.Background())
	if deps.Metrics != nil {
		if err := deps.Metrics.Register(&collector{lb: lb}); err != nil {
			return nil, fmt.Errorf("new lb: register metrics: %w", err)
		}
	}
	return lb, nil
}

// Open binds the listener, reads the backends once, starts health checks and
// serves. It returns once the balancer accepts connections.
func (lb *LB) Open() error {
	lb.closeMu.Lock() // Open and Shutdown exclude each other
	defer lb.closeMu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	if !lb.opened.CompareAndSwap(false, true) {
		return errors.New("open lb: already open")
	}
	ln, err := net.Listen("tcp", lb.cfg.Addr)
	if err != nil {
		lb.opened.Store(false)
		return fmt.Errorf("open lb: %w", err)
	}
	lb.ln = ln
	if lb.cfg.EventLoops > 0 {
		if err := lb.startLoops(); err != nil {
			ln.Close()
			lb.opened.Store(false)
			return fmt.Errorf("open lb: %w", err)
		}
	}
	lb.sync(time.Now())

	lb.wg.Add(2)
	go func() {
		defer lb.wg.Done()
		lb.serveConns(ln)
	}()
	go func() {
		defer lb.wg.Done()
		lb.maintain()
	}()
	lb.log.Info("lb listening", "addr", ln.Addr().String(), "policy", lb.cfg.Policy, "sticky", lb.cfg.Sticky, "event_loops", len(lb.loops))
	return nil
}

// Addr is the bound listen address, or the configured one before Open.
func (lb *LB) Addr() string {
	if lb.ln != nil {
		return lb.ln.Addr().String()
	}
	return lb.cfg.Addr
}

// Ready reports whether the balancer is serving and has at least one backend
// it can send a request to.
func (lb *LB) Ready() bool {
	p := lb.pool.Load()
	return lb.opened.Load() && !lb.closing.Load() && (len(p.eligible) > 0 || len(p.fallback) > 0)
}

// Close shuts down gracefully within Config.DrainTimeout; see Shutdown.
func (lb *LB) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), lb.cfg.DrainTimeout)
	defer cancel()
	return lb.Shutdown(ctx)
}

// Shutdown stops accepting connections, lets in-flight requests finish until
// ctx ends (then closes their connections), and stops health checks and
// discovery. The order matters: backends must stay known and checked while
// the last requests are proxied to them.
func (lb *LB) Shutdown(ctx context.Context) error {
	lb.closeMu.Lock()
	defer lb.closeMu.Unlock()
	if lb.closed {
		return lb.closeErr
	}
	lb.closed = true
	lb.closing.Store(true)
	if !lb.opened.Load() {
		lb.cancel()
		return nil
	}
	lb.log.Info("lb draining", "in_flight", lb.inFlight())
	_ = lb.ln.Close()
	err := lb.shutdownConns(ctx)
	if err != nil {
		err = fmt.Errorf("close lb: drain: %w", err)
	}
	lb.cancel()
	lb.wakeLoops(false)
	lb.wg.Wait()
	lb.mu.Lock()
	for _, b := range lb.backends {
		lb.stopBackend(b)
		b.pool.closeIdle(true)
	}
	lb.mu.Unlock()
	lb.checks.Wait()
	lb.closeErr = err
	lb.log.Info("lb closed")
	return err
}

// connOpened and connClosed count a client connection in and out, whichever
// transport serves it (a hand-off from a loop to a goroutine is neither).
// connClosed also gives back the slot serveConns took before accepting it.
func (lb *LB) connOpened() {
	lb.connWG.Add(1)
	lb.connsOpen.Add(1)
}

func (lb *LB) connClosed() {
	lb.connsOpen.Add(-1)
	lb.connWG.Done()
	lb.freeSlot()
}

// freeSlot gives back a slot taken by serveConns, for a connection that was
// closed or never counted in. It never blocks: a slot given back twice (a
// bug) must not stop the event loop that closes a connection.
func (lb *LB) freeSlot() {
	select {
	case <-lb.slots:
	default:
	}
}

func (lb *LB) inFlight() int64 {
	var n int64
	for _, b := range lb.pool.Load().all {
		n += b.inflight.Load()
	}
	return n
}

// maintain polls discovery, ends expired ejections and rotates latency
// windows until the balancer closes.
func (lb *LB) maintain() {
	tick := time.NewTicker(lb.cfg.DiscoveryInterval)
	defer tick.Stop()
	lastRotate := time.Now()
	for {
		select {
		case <-lb.ctx.Done():
			return
		case now := <-tick.C:
			lb.sync(now)
			if now.Sub(lastRotate) >= windowPeriod {
				lastRotate = now
				for _, b := range lb.pool.Load().all {
					b.rotateWindow()
				}
			}
		}
	}
}

// sync applies discovery's current list and ends expired ejections.
func (lb *LB) sync(now time.Time) {
	targets := lb.disc.Backends()
	lb.mu.Lock()
	defer lb.mu.Unlock()
	changed := false
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		name := t.Name
		if name == "" {
			name = t.Addr
		}
		if t.Addr == "" || seen[name] {
			continue
		}
		seen[name] = true
		w := max(t.Weight, 1)
		healthAddr := t.HealthAddr
		if healthAddr == "" {
			healthAddr = t.Addr
		}
		if b, ok := lb.backends[name]; ok && b.addr == t.Addr && b.healthAddr == healthAddr {
			if b.weight != w {
				b.weight = w
				changed = true
			}
			if b.draining.Load() != t.Draining {
				b.draining.Store(t.Draining)
				lb.log.Info("lb backend draining changed", "backend", name, "draining", t.Draining)
				changed = true
			}
			continue
		} else if ok {
			lb.removeBackend(b)
		}
		b := newBackend(t, &lb.cfg)
		lb.backends[name] = b
		lb.startBackend(b)
		lb.log.Info("lb backend added", "backend", name, "addr", t.Addr)
		changed = true
	}
	for name, b := range lb.backends {
		if !seen[name] {
			lb.removeBackend(b)
			lb.log.Info("lb backend removed", "backend", name)
			changed = true
		}
	}
	for _, b := range lb.backends {
		if until := b.ejectedUntil.Load(); until != 0 && now.UnixNano() >= until {
			b.ejectedUntil.Store(0)
			b.lastEjectionEnd.Store(now.UnixNano())
			lb.log.Info("lb backend ejection ended", "backend", b.name)
			changed = true
		} else if until == 0 && b.ejections.Load() > 0 && now.UnixNano()-b.lastEjectionEnd.Load() >= int64(lb.cfg.EjectMaxTime) {
			// Good behaviour for a while forgives past ejections.
			b.ejections.Store(0)
		}
	}
	if changed {
		lb.rebuildLocked()
	}
}

// startBackend begins active checks of b, or trusts it at once when they are
// off. Called with lb.mu held.
func (lb *LB) startBackend(b *backend) {
	if lb.cfg.HealthPath == "" {
		b.healthy.Store(true)
		return
	}
	ctx, cancel := context.WithCancel(lb.ctx)
	b.stop = cancel
	lb.checks.Add(1)
	go func() {
		defer lb.checks.Done()
		lb.checkLoop(ctx, b)
	}()
}

// stopBackend ends b's checks and drops its idle connections; requests in
// flight on it finish. Called with lb.mu held.
func (lb *LB) stopBackend(b *backend) {
	if b.stop != nil {
		// The check goroutine takes lb.mu to publish a verdict, so it is
		// not waited for here but by Shutdown; it returns promptly.
		b.stop()
	}
	b.checker.CloseIdleConnections()
}

func (lb *LB) removeBackend(b *backend) {
	delete(lb.backends, b.name)
	lb.stopBackend(b)
	// Requests in flight finish on their connections, which then close.
	b.pool.closeIdle(true)
}

// checkLoop runs active health checks of b until ctx ends: one at once, then
// one per HealthInterval.
func (lb *LB) checkLoop(ctx context.Context, b *backend) {
	var st checkState
	url := "http://" + b.healthAddr + lb.cfg.HealthPath
	tick := time.NewTicker(lb.cfg.HealthInterval)
	defer tick.Stop()
	for {
		ok, detail := lb.check(ctx, b, url)
		if ctx.Err() != nil {
			return
		}
		if prev, _ := b.lastCheck.Load().(string); prev != detail {
			b.lastCheck.Store(detail)
			switch {
			case detail == "":
			case !st.upOnce:
				// A backend that has never passed is starting up: its
				// first failing checks are expected, not a fault.
				lb.log.Info("lb backend not ready yet", "backend", b.name, "addr", b.healthAddr, "result", detail)
			default:
				lb.log.Warn("lb backend check", "backend", b.name, "addr", b.healthAddr, "result", detail)
			}
		}
		if verdict, changed := st.record(ok, b.healthy.Load(), lb.cfg.Rise, lb.cfg.Fall); changed {
			lb.mu.Lock()
			if ctx.Err() == nil {
				b.healthy.Store(verdict)
				if verdict {
					// A node that came back starts afresh, whatever
					// ejected it before it went down.
					b.ejectedUntil.Store(0)
					b.consecErrors.Store(0)
					b.consec5xx.Store(0)
				}
				lb.rebuildLocked()
			}
			lb.mu.Unlock()
			if verdict {
				lb.log.Info("lb backend healthy", "backend", b.name, "addr", b.addr)
			} else {
				lb.log.Warn("lb backend unhealthy", "backend", b.name, "addr", b.addr, "check", detail)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check sends one GET of the health path and reports whether it answered 200.
func (lb *LB) check(ctx context.Context, b *backend, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, lb.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "scalestack-lb/"+lb.cfg.NodeName)
	resp, err := b.checker.RoundTrip(req)
	if err != nil {
		return false, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, ""
	case http.StatusNotFound:
		// The node answers HTTP but has no such path: it has no readiness
		// endpoint there, so the answer itself is the check (as a TCP
		// check would be). Marked in Status, so that a wrong path shows.
		return true, "no " + lb.cfg.HealthPath + " (404): judged by its answering"
	}
	return false, resp.Status
}

// rebuildLocked publishes a new pool snapshot. Called with lb.mu held.
func (lb *LB) rebuildLocked() {
	p := &pool{}
	for _, b := range lb.backends {
		p.all = append(p.all, b)
	}
	sortBackends(p.all)
	for _, b := range p.all {
		switch {
		case b.eligible():
			p.eligible = append(p.eligible, b)
			p.weights = append(p.weights, b.weight)
			p.hashes = append(p.hashes, b.nameHash)
		case b.healthy.Load() && !b.draining.Load():
			p.fallback = append(p.fallback, b)
		}
	}
	lb.wmu.Lock()
	lb.pool.Store(p)
	lb.wmu.Unlock()
}

func sortBackends(bs []*backend) {
	for i := 1; i < len(bs); i++ {
		for j := i; j > 0 && bs[j].name < bs[j-1].name; j-- {
			bs[j], bs[j-1] = bs[j-1], bs[j]
		}
	}
}

// eject takes b out of rotation after repeated failures, unless the cap on
// ejected backends is reached.
func (lb *LB) eject(b *backend, reason string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if b.ejectedUntil.Load() != 0 || lb.backends[b.name] != b {
		return
	}
	ejected, n := 0, 0
	for _, o := range lb.backends {
		if o.draining.Load() {
			continue
		}
		n++
		if o.ejectedUntil.Load() != 0 {
			ejected++
		}
	}
	if ejected >= maxEjected(n, lb.cfg.MaxEjectionPercent) {
		return
	}
	count := b.ejections.Add(1)
	d := ejectionTime(lb.cfg.EjectBaseTime, lb.cfg.EjectMaxTime, int(count))
	b.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	b.ejectionsTotal.Add(1)
	b.consecErrors.Store(0)
	b.consec5xx.Store(0)
	lb.rebuildLocked()
	lb.log.Warn("lb backend ejected", "backend", b.name, "addr", b.addr, "reason", reason, "for", d, "ejections", count)
}
