// Package cache is the cache role: an in-memory key-value cache bounded in
// bytes, with per-key TTLs and LRU eviction, that speaks the Redis protocol
// (RESP2) so that redis-cli, redis-benchmark and any Redis client library
// work against it. The app uses it for cache-aside reads and shared
// sessions (DESIGN.md, stages 5 and 7).
//
// The data structure is pkg/cache/lru, sharded here under one mutex per
// shard (store.go); the wire format is pkg/cache/resp. A connection's
// bytes are moved by an epoll event loop shared with other connections
// (eventloop_linux.go, the default on Linux, as Redis's event loop) or by a
// goroutine of its own (conn.go). Either way the server reads whatever the
// client has sent, executes every complete request in it, and answers the
// whole batch with one write, so pipelined requests cost one read and one
// write per batch. docs/cache.md describes the role for its users.
package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/accept"
	"github.com/scalestack/scalestack/pkg/cache/resp"
)

// Server is a running cache. Build it with New, start it with Open, stop it
// with Close.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  *store
	limits resp.Limits
	// preAuth bounds the requests of a connection that has not
	// authenticated yet.
	preAuth resp.Limits
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}

	mu     sync.Mutex
	ln     net.Listener
	loops  []*eventLoop
	conns  map[*conn]struct{}
	opened bool
	closed bool
	nextID uint64

	commands     atomic.Uint64
	connsOpen    atomic.Int64
	connsTotal   atomic.Uint64
	connsRefuse  atomic.Uint64
	authFailures atomic.Uint64
	opsPerSec    atomic.Uint64 // math.Float64bits
}

// New checks cfg and builds a server that is not yet listening.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:   cfg,
		log:   log,
		store: newStore(cfg.MaxBytes, cfg.Shards),
		limits: resp.Limits{
			MaxArgs:    cfg.MaxArgs,
			MaxBulk:    cfg.MaxValueBytes,
			MaxRequest: cfg.MaxRequestBytes,
			MaxInline:  min(64<<10, cfg.MaxRequestBytes/2),
		},
		preAuth: resp.Limits{
			MaxArgs:    preAuthMaxArgs,
			MaxBulk:    min(cfg.MaxValueBytes, preAuthMaxRequest),
			MaxRequest: min(cfg.MaxRequestBytes, preAuthMaxRequest),
			MaxInline:  preAuthMaxRequest,
		},
		ctx:    ctx,
		cancel: cancel,
		ready:  make(chan struct{}),
		conns:  make(map[*conn]struct{}),
	}
	if deps.Metrics != nil {
		if err := deps.Metrics.Register(&collector{s: s}); err != nil {
			cancel()
			return nil, fmt.Errorf("cache: register metrics: %w", err)
		}
	}
	return s, nil
}

// Open binds the listener and starts serving. The server is ready when Open
// returns nil.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened || s.closed {
		return errors.New("cache: open: already opened")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("cache: listen: %w", err)
	}
	nloops := s.cfg.EventLoops
	if s.cfg.TLS != nil {
		// The event loops read and write the socket itself; TLS needs
		// crypto/tls between the two, so a goroutine per connection.
		ln, nloops = tls.NewListener(ln, s.cfg.TLS.Clone()), 0
	}
	var loops []*eventLoop
	for range nloops {
		l, err := newEventLoop(s)
		if err != nil {
			for _, l := range loops {
				l.closeFDs()
			}
			ln.Close()
			return fmt.Errorf("cache: event loop: %w", err)
		}
		loops = append(loops, l)
	}
	s.ln, s.loops, s.opened, s.started = ln, loops, true, time.Now()
	s.wg.Add(2 + len(loops))
	for _, l := range loops {
		go l.run()
	}
	if len(loops) > 0 {
		go s.acceptRaw(ln, loops)
	} else {
		go s.acceptLoop(ln)
	}
	go s.housekeeping()
	close(s.ready)
	s.log.Info("cache listening", "addr", ln.Addr().String(), "max_bytes", s.cfg.MaxBytes,
		"shards", len(s.store.shards), "event_loops", len(loops), "auth", s.cfg.Password != "", "tls", s.cfg.TLS != nil)
	return nil
}

// Addr is the address the server listens on, with the real port when
// Config.Addr asked for port 0; empty before Open.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Ready reports whether the server is accepting connections.
func (s *Server) Ready() bool {
	select {
	case <-s.ready:
		return s.ctx.Err() == nil
	default:
		return false
	}
}

// ReadyCh is closed when the server starts accepting connections.
func (s *Server) ReadyCh() <-chan struct{} { return s.ready }

// Close stops accepting connections, closes the open ones (a request being
// executed finishes; its reply may be lost) and waits for every goroutine
// of the server to return. The cache's contents are dropped with it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ln := s.ln
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	s.cancel()
	// The listener first, so no connection arrives while the open ones are
	// being closed.
	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("cache: close listener: %w", cerr)
		}
	}
	for _, c := range conns {
		c.nc.Close()
	}
	// Event loops see the cancelled context when woken, and close their own
	// connections.
	for _, l := range s.loops {
		l.wake()
	}
	s.wg.Wait()
	s.log.Info("cache closed")
	return err
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	accept.Serve(s.ctx, ln, accept.Config{Log: s.log, Msg: "cache accept"}, func(nc net.Conn) {
		if s.refuseOverCap(nc) {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.nextID++
		c := newConn(s, s.nextID)
		c.nc, c.remote, c.local = nc, nc.RemoteAddr().String(), nc.LocalAddr().String()
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.connsOpen.Add(1)
		s.connsTotal.Add(1)
		go c.serve()
	})
}

// refuseOverCap answers and closes a connection past MaxClients, as Redis
// does, and reports whether it did.
func (s *Server) refuseOverCap(nc net.Conn) bool {
	if s.connsOpen.Load() < int64(s.cfg.MaxClients) {
		return false
	}
	s.connsRefuse.Add(1)
	nc.Write([]byte("-ERR max number of clients reached\r\n"))
	nc.Close()
	return true
}

// housekeeping runs the active expire cycle every ExpireInterval and
// measures the command rate once a second.
func (s *Server) housekeeping() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.ExpireInterval)
	defer tick.Stop()
	lastAt, lastCount := time.Now(), s.commands.Load()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			// A quarter of each interval at most, as Redis's slow cycle.
			s.store.expireCycle(s.cfg.ExpireInterval / 4)
			if d := now.Sub(lastAt); d >= time.Second {
				n := s.commands.Load()
				s.opsPerSec.Store(math.Float64bits(float64(n-lastCount) / d.Seconds()))
				lastAt, lastCount = now, n
			}
		}
	}
}

// Status is the live figures of the cache for the node's /status page.
type Status struct {
	Addr             string  `json:"addr"`
	Keys             int     `json:"keys"`
	KeysWithTTL      int     `json:"keys_with_ttl"`
	Bytes            int64   `json:"bytes"`
	MaxBytes         int64   `json:"max_bytes"`
	Hits             uint64  `json:"hits"`
	Misses           uint64  `json:"misses"`
	HitRatio         float64 `json:"hit_ratio"`
	Evictions        uint64  `json:"evictions"`
	Expired          uint64  `json:"expired"`
	Connections      int64   `json:"connections"`
	ConnectionsTotal uint64  `json:"connections_total"`
	AuthFailures     uint64  `json:"auth_failures"`
	Commands         uint64  `json:"commands"`
	OpsPerSec        float64 `json:"ops_per_sec"`
}

// Status returns the live figures; it is safe to call at any time.
func (s *Server) Status() any { return s.status() }

func (s *Server) status() Status {
	t := s.store.totals()
	st := Status{
		Addr:             s.Addr(),
		Keys:             t.keys,
		KeysWithTTL:      t.expiring,
		Bytes:            t.bytes,
		MaxBytes:         s.cfg.MaxBytes,
		Hits:             t.stats.Hits,
		Misses:           t.stats.Misses,
		Evictions:        t.stats.Evictions,
		Expired:          t.stats.Expired,
		Connections:      s.connsOpen.Load(),
		ConnectionsTotal: s.connsTotal.Load(),
		AuthFailures:     s.authFailures.Load(),
		Commands:         s.commands.Load(),
		OpsPerSec:        math.Float64frombits(s.opsPerSec.Load()),
	}
	if n := st.Hits + st.Misses; n > 0 {
		st.HitRatio = float64(st.Hits) / float64(n)
	}
	return st
}

// hostname is for INFO; an error leaves it empty.
func hostname() string {
	h, _ := os.Hostname()
	return h
}
