package lb

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// backend is one app node behind the balancer: its connection pool and the
// live figures that decide whether it gets requests.
type backend struct {
	name       string
	addr       string
	healthAddr string // where active checks go
	nameHash   uint64

	// pool holds keep-alive connections for proxied requests; checker is a
	// separate small client for active health checks.
	pool    connPool
	checker *http.Transport

	// weight and draining are set by discovery under LB.mu.
	weight   int
	draining atomic.Bool

	// healthy is the verdict of the active checks (true when checks are off).
	healthy atomic.Bool
	// lastCheck is what the latest active check found wrong, "" when
	// nothing (a string).
	lastCheck atomic.Value
	// ejectedUntil is when a passive ejection ends, in Unix nanoseconds;
	// 0 means not ejected.
	ejectedUntil atomic.Int64
	// ejections counts recent ejections, for the back-off.
	ejections atomic.Int64
	// lastEjectionEnd is when the latest ejection ended, Unix nanoseconds.
	lastEjectionEnd atomic.Int64

	consecErrors atomic.Int64
	consec5xx    atomic.Int64

	inflight       atomic.Int64
	requests       atomic.Uint64
	errors         atomic.Uint64
	responses5xx   atomic.Uint64
	ejectionsTotal atomic.Uint64

	latency latencyHistogram    // since the backend appeared, for Prometheus
	window  [2]latencyHistogram // the last one or two windows, for Status
	cur     atomic.Int32        // index of the window being filled

	// stop ends the backend's health-check goroutine.
	stop context.CancelFunc
}

func newBackend(t Target, cfg *Config) *backend {
	name := t.Name
	if name == "" {
		name = t.Addr
	}
	w := t.Weight
	if w < 1 {
		w = 1
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout}
	healthAddr := t.HealthAddr
	if healthAddr == "" {
		healthAddr = t.Addr
	}
	b := &backend{
		name:       name,
		addr:       t.Addr,
		healthAddr: healthAddr,
		nameHash:   hashString(name),
		weight:     w,
		pool:       connPool{max: cfg.MaxIdleConns},
		checker: &http.Transport{
			// No Proxy: an environment's HTTP_PROXY must not capture
			// traffic between nodes.
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
	b.draining.Store(t.Draining)
	return b
}

// eligible reports whether the backend may take a new request now.
func (b *backend) eligible() bool {
	return b.healthy.Load() && !b.draining.Load() && b.ejectedUntil.Load() == 0
}

func (b *backend) state() string {
	switch {
	case b.draining.Load():
		return "draining"
	case !b.healthy.Load():
		return "unhealthy"
	case b.ejectedUntil.Load() != 0:
		return "ejected"
	}
	return "healthy"
}

func (b *backend) observe(d time.Duration) {
	b.latency.observe(d)
	b.window[b.cur.Load()&1].observe(d)
}

// rotateWindow starts a new latency window, dropping the older of the two.
func (b *backend) rotateWindow() {
	next := 1 - b.cur.Load()&1
	b.window[next].reset()
	b.cur.Store(next)
}

// checkState is the rise/fall counter of active health checks. It is owned
// by the backend's check goroutine and not safe for concurrent use.
type checkState struct {
	pass, fail int
	checked    bool
	// upOnce records that the backend has been healthy since its checks
	// began.
	upOnce bool
}

// record counts one check result and returns the new verdict and whether it
// changed. The first check decides at once, and a backend that has never
// been healthy is admitted on its first passing check, like HAProxy's
// init-state down: a node that fails its first checks is starting up, not
// flapping, and making it pass Rise checks in a row only delays the moment
// the balancer spreads load (issue 17: `node up` said ready while every
// request went to app-1). Rise guards a backend that was healthy and went
// down, the flapping case it exists for.
func (s *checkState) record(ok, healthy bool, rise, fall int) (verdict, changed bool) {
	first := !s.checked
	s.checked = true
	s.upOnce = s.upOnce || healthy
	if ok {
		s.pass++
		s.fail = 0
		if !healthy && (first || !s.upOnce || s.pass >= rise) {
			s.upOnce = true
			return true, true
		}
		return healthy, false
	}
	s.fail++
	s.pass = 0
	if healthy && (first || s.fail >= fall) {
		return false, true
	}
	return healthy, false
}
