package cachetier_test

import (
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/cache"
)

// startCache starts a real cache node (pkg/cache) on addr (host:0 picks a
// free port) and closes it when the test ends.
func startCache(tb testing.TB, addr string) *cache.Server {
	tb.Helper()
	cfg := cache.DefaultConfig()
	cfg.Addr = addr
	cfg.MaxBytes = 16 << 20
	cfg.Shards = 4
	cfg.ExpireInterval = 10 * time.Millisecond
	srv, err := cache.New(cfg, cache.Deps{})
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	if err := srv.Open(); err != nil {
		tb.Fatalf("cache Open: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// nodeSet is a changeable set of cache addresses, as membership would give.
type nodeSet struct {
	mu    sync.Mutex
	addrs []string
}

func (s *nodeSet) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

func (s *nodeSet) set(addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addrs = addrs
}

// testConfig is a tier config with timings short enough for tests but
// long enough for -race on a loaded machine.
func testConfig(nodes func() []string) cachetier.Config {
	cfg := cachetier.DefaultConfig()
	cfg.Nodes = nodes
	cfg.Timeout = 250 * time.Millisecond
	cfg.TombstoneTTL = 1200 * time.Millisecond
	cfg.Cooldown = 30 * time.Millisecond
	cfg.RefreshInterval = 20 * time.Millisecond
	return cfg
}

func openTier(tb testing.TB, cfg cachetier.Config) *cachetier.Tier {
	tb.Helper()
	t, err := cachetier.New(cfg)
	if err != nil {
		tb.Fatalf("cachetier.New: %v", err)
	}
	if err := t.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return t
}

// rawClient talks to one cache node directly, to look at what the tier left.
func rawClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// proxy forwards TCP connections to a target until cut: then it closes
// every connection and refuses new ones, like a network partition that
// leaves the cache node (and its data) running.
type proxy struct {
	ln     net.Listener
	target string
	down   atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(tb testing.TB, addr, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.down.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		_ = err // a reset from the other side: the pair is closed below
	}
	dst.Close()
	src.Close()
}

// cut closes every connection and refuses new ones until heal.
func (p *proxy) cut() {
	p.down.Store(true)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() { p.down.Store(false) }

// sealedValue reports whether raw, as a cache node holds it, is a sealed
// value (D<expires>.<mac><value>) of want.
func sealedValue(raw, want string) bool {
	if !strings.HasPrefix(raw, "D") {
		return false
	}
	_, rest, ok := strings.Cut(raw[1:], ".")
	return ok && len(rest) == 43+len(want) && rest[43:] == want
}
