package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// Config holds the store role's settings. The node fills Addr, NodeName and
// DataDir; the rest has defaults (DefaultConfig) and settings (Settings). What
// the node injects (peers, members, logger, metrics) is in Deps.
type Config struct {
	// Addr is the host:port the HTTP API listens on; port 0 picks a free one
	// (see Server.Addr). Set by the node from --addr and --store-port.
	Addr string

	// NodeName names this node in the X-Store-Node header of every response.
	NodeName string

	// DataDir is the directory of the database file, DataDir/store.db. It is
	// created if missing. Set by the node from --data.
	DataDir string

	// MaxValueBytes is the largest value accepted, in bytes (flag
	// --store-max-value-bytes). Default and ceiling: MaxValueSize (1 MiB).
	MaxValueBytes int

	// LogRetention is how many recent log entries are kept for replicas to
	// catch up from (--store-log-retention). Default 10000; see
	// Options.LogRetention for the trade-off.
	LogRetention int

	// MaxBatchTxns caps the transactions grouped into one commit (flag
	// --store-max-batch). Default 256; see Options.MaxBatchTxns.
	MaxBatchTxns int

	// BatchDelay is how long a commit waits for more writers after the first
	// (--store-batch-delay). Default 0: group only writers already
	// queued, adding no latency; see Options.BatchDelay.
	BatchDelay time.Duration

	// ReadHeaderTimeout bounds reading a request's headers. Default 5s; it
	// is what stops a slow client from holding a connection open.
	ReadHeaderTimeout time.Duration

	// ReadTimeout bounds reading a whole request, body included. Default 30s,
	// enough for MaxRequestBytes over a slow link.
	ReadTimeout time.Duration

	// WriteTimeout bounds writing a response, counted from the end of the
	// request headers, so it also bounds the wait for a commit. Default 30s.
	WriteTimeout time.Duration

	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 120s: longer than the client's idle timeout, so the
	// client closes first and never sends into a closing connection.
	IdleTimeout time.Duration

	// ShutdownTimeout bounds how long Close waits for in-flight requests
	// before closing connections. Default 10s.
	ShutdownTimeout time.Duration

	// Role is the role the node starts in: RolePrimary or RoleReplica. Set by
	// the node from --roles. With a Lease, "primary" only means "may create
	// the lease when none exists yet": whoever holds the lease is the
	// primary, and a former primary that comes back follows as a replica.
	Role string

	// Sync is how many replicas must have a write durable before the
	// primary acknowledges it (--store-sync). Default 0: asynchronous, the
	// last writes before a failover can be lost. With 1 or more, a write
	// that replicas do not confirm within SyncTimeout fails with
	// ErrSyncTimeout (503) instead of being acknowledged unsafely.
	Sync int

	// SyncTimeout bounds the wait for replicas under Sync (--store-sync-timeout). Default 2s: longer than a failover, so a write fails
	// rather than hangs when no replica is connected.
	SyncTimeout time.Duration

	// Failover turns on the lease (--store-failover, default off): the
	// primary is whichever node a majority of the group's store nodes
	// granted the lease, epochs fence a deposed one, and a replica takes
	// over when the primary fails (lease.go). Every store node of the group
	// sets it; three nodes survive losing any one. Off, the node started as
	// primary is primary for good, and replicas follow the node the Peers
	// mark primary.
	Failover bool

	// LeaseTTL is how long a lease lasts without renewal (--store-lease-ttl). Default 1.5s. The primary renews every LeaseTTL/3 and
	// stops writing LeaseMargin before the TTL runs out on its own clock; a
	// replica takes over once the lease went unrenewed for LeaseTTL on its
	// clock. Shorter fails over faster but risks needless failovers when a
	// network or disk stalls for longer than it.
	LeaseTTL time.Duration

	// LeaseMargin is how long before its lease would expire the primary
	// stops accepting writes, covering clock-rate differences and the time a
	// write takes between its checks. Default LeaseTTL/5.
	LeaseMargin time.Duration

	// HandOverOnClose makes a primary with Failover hand over to its
	// freshest replica when it closes (SIGTERM, `node stop`), so writes
	// pause for one election round instead of a whole lease. Default true;
	// tests that stand for a crash turn it off.
	HandOverOnClose bool

	// HeartbeatInterval is how often a primary tells an idle replica its LSN
	// (the replica's lag figure), and the basis of the replica's read
	// timeout (3 heartbeats). Default 200ms.
	HeartbeatInterval time.Duration

	// Token is the bearer token (Authorization: Bearer <token>) every
	// request to the store port must carry: the API, the replication
	// stream, snapshots, lease messages, promote and hand-over, checksum
	// and status; anything else is answered 401 (auth.go). This node also
	// presents it on its own requests to the other store nodes, so a group
	// shares one token. The node derives it from --cluster-key
	// (cluster.PurposeStore). Default empty: the port is open to whoever
	// can reach it, which the node allows on loopback only.
	Token string

	// TLS, when not nil, makes the store port serve TLS with it (the
	// node's certificate; --tls-cert, --tls-key). Default nil: plain HTTP,
	// in which the token and the data cross the network readable.
	TLS *tls.Config

	// PeerTLS, when not nil, is the client side of this node's requests to
	// the other store nodes (replication stream, snapshots, lease
	// messages, hand-over, peer status): https, each peer verified against
	// its RootCAs (--tls-ca) and the address dialled. Set it together with
	// TLS: a group is all TLS or all plain. Default nil.
	PeerTLS *tls.Config

	// SessionWait is how long a replica holds a session read that asks for
	// an LSN it has not applied yet before it refuses it (the client then
	// reads from the primary). Default 100ms.
	SessionWait time.Duration

	// Group is the store group this node is in (--group, stage 10): it
	// votes for, replicates from and follows only the store nodes of its
	// group, grants lease messages only from them, and refuses a request
	// that names another group (store.HeaderGroup). Every group has its own
	// primary, lease, voters, epochs and LSNs. Default store.DefaultGroup
	// (""; "default" means the same): the one group of stages 1 to 9. A
	// name is 1-32 characters of a-z, 0-9 and '-' (store.ParseGroup).
	Group string
}

// Store roles (Config.Role).
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// DefaultConfig returns a Config with every default filled in; Addr is
// 127.0.0.1:7070 and DataDir "data".
func DefaultConfig() Config {
	o := boltdb.DefaultOptions()
	return Config{
		Addr:              "127.0.0.1:7070",
		DataDir:           "data",
		MaxValueBytes:     o.MaxValueBytes,
		LogRetention:      o.LogRetention,
		MaxBatchTxns:      o.MaxBatchTxns,
		BatchDelay:        o.BatchDelay,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		Role:              RolePrimary,
		SyncTimeout:       2 * time.Second,
		LeaseTTL:          1500 * time.Millisecond,
		HandOverOnClose:   true,
		HeartbeatInterval: 200 * time.Millisecond,
		SessionWait:       100 * time.Millisecond,
	}
}

// Validate reports the first field of c that is missing or out of range.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return fieldErr("Addr", "is empty")
	case c.DataDir == "":
		return fieldErr("DataDir", "is empty")
	case c.MaxValueBytes <= 0 || c.MaxValueBytes > store.MaxValueSize:
		return fieldErr("MaxValueBytes", "%d must be between 1 and %d", c.MaxValueBytes, store.MaxValueSize)
	case c.LogRetention < 0:
		return fieldErr("LogRetention", "%d must not be negative", c.LogRetention)
	case c.MaxBatchTxns <= 0:
		return fieldErr("MaxBatchTxns", "%d must be positive", c.MaxBatchTxns)
	case c.BatchDelay < 0:
		return fieldErr("BatchDelay", "%v must not be negative", c.BatchDelay)
	case c.ReadHeaderTimeout <= 0:
		return fieldErr("ReadHeaderTimeout", "%v must be positive", c.ReadHeaderTimeout)
	case c.ReadTimeout <= 0:
		return fieldErr("ReadTimeout", "%v must be positive", c.ReadTimeout)
	case c.WriteTimeout <= 0:
		return fieldErr("WriteTimeout", "%v must be positive", c.WriteTimeout)
	case c.IdleTimeout <= 0:
		return fieldErr("IdleTimeout", "%v must be positive", c.IdleTimeout)
	case c.ShutdownTimeout <= 0:
		return fieldErr("ShutdownTimeout", "%v must be positive", c.ShutdownTimeout)
	case c.Role != RolePrimary && c.Role != RoleReplica:
		return fieldErr("Role", "%q: want %q or %q", c.Role, RolePrimary, RoleReplica)
	case c.Sync < 0:
		return fieldErr("Sync", "%d must not be negative", c.Sync)
	case c.SyncTimeout <= 0:
		return fieldErr("SyncTimeout", "%v must be positive", c.SyncTimeout)
	case c.LeaseTTL < 300*time.Millisecond:
		return fieldErr("LeaseTTL", "%v must be at least 300ms", c.LeaseTTL)
	case c.LeaseMargin < 0 || c.LeaseMargin >= c.LeaseTTL/2:
		return fieldErr("LeaseMargin", "%v must be between 0 and half of LeaseTTL", c.LeaseMargin)
	case c.HeartbeatInterval <= 0:
		return fieldErr("HeartbeatInterval", "%v must be positive", c.HeartbeatInterval)
	case c.SessionWait < 0:
		return fieldErr("SessionWait", "%v must not be negative", c.SessionWait)
	}
	if _, err := store.ParseGroup(c.Group); err != nil {
		return fieldErr("Group", "%v", err)
	}
	return nil
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("store config", field, format, args...)
}

// Settings returns the store's own settings, bound to c's fields. The
// node owns --store-port and --data.
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("store")
	return []settings.Setting{
		s("store-max-value-bytes", "MaxValueBytes", "largest value the store accepts (bytes, at most 1 MiB; suffixes KiB, MiB)", settings.IntBytes(&c.MaxValueBytes)),
		s("store-log-retention", "LogRetention", "recent log entries kept for replicas to catch up from (count)", settings.Int(&c.LogRetention)),
		s("store-max-batch", "MaxBatchTxns", "most transactions grouped into one commit, one fsync (count)", settings.Int(&c.MaxBatchTxns)),
		s("store-batch-delay", "BatchDelay", "how long a commit waits for more writers to group (duration; 0: only those already waiting)", settings.Duration(&c.BatchDelay)),
		s("store-sync", "Sync", "replicas that must have a write durable before the primary acknowledges it (count; 0: asynchronous, the last writes can be lost on failover)", settings.Int(&c.Sync)).Formerly("sync"),
		s("store-sync-timeout", "SyncTimeout", "how long a write waits for --store-sync replicas before it fails with 503 (duration)", settings.Duration(&c.SyncTimeout)).Formerly("sync-timeout"),
		s("store-failover", "Failover", "elect the primary by a majority lease of the group's store nodes, so a replica takes over when the primary fails; set on every store node of the group (true or false)", settings.Bool(&c.Failover)).Formerly("failover"),
		s("group", "Group", "the stage-10 lever, the store group of this store node: it elects, replicates and fails over with the store nodes of its group only; a client of the group sees only them (1-32 characters of a-z, 0-9, '-'; empty or default: the one group of stages 1-9)", settings.String(&c.Group)).AsLever(),
		s("store-lease-ttl", "LeaseTTL", "primary lease lifetime without renewal, at least 300ms; failover takes a little more than this (duration)", settings.Duration(&c.LeaseTTL)).Formerly("lease-ttl"),
	}
}

// Deps are what the store role is given rather than told: New takes them
// beside the Config, and Config.Validate does not look at them.
type Deps struct {
	// Peers lists the store nodes that serve (membership, in a node).
	// Replicas use it to find the primary without Failover; with it, the
	// lease is offered to them. Nil: no peers.
	Peers store.Resolver

	// Members lists every store node of the group, starting ones included
	// (membership, in a node), so that the primary's lease renewals reach a
	// node that is still starting and waits to learn who the primary is.
	// Nil: Peers only.
	Members store.Resolver

	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger

	// Metrics, when set, receives the store's Prometheus collectors. Nil
	// means they are not registered anywhere.
	Metrics prometheus.Registerer
}

// serverConfig is what New was given, settings and dependencies in one
// value, so that the role's code reads s.cfg.LeaseTTL and s.cfg.Peers alike.
type serverConfig struct {
	Config
	Deps
}

// Server is the store role: a DB served over HTTP/JSON.
type Server struct {
	cfg     serverConfig
	log     *slog.Logger
	metrics *metrics

	mu   sync.Mutex // guards db, ln, http, repl
	db   *boltdb.DB
	repl *replication
	ln   net.Listener
	http *http.Server

	refused refusals // requests refused for their credential, for the log

	ready     chan struct{}
	serveDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and builds a Server with deps; Open starts it.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Group, _ = store.ParseGroup(cfg.Group)
	// The store nodes of other groups do not exist for this one: it
	// neither offers them the lease nor follows them.
	if deps.Peers != nil {
		deps.Peers = store.InGroup(deps.Peers, cfg.Group)
	}
	if deps.Members != nil {
		deps.Members = store.InGroup(deps.Members, cfg.Group)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       serverConfig{cfg, deps},
		log:       log,
		ready:     make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	s.metrics = newMetrics(func() uint64 {
		if db := s.DB(); db != nil {
			return db.LSN()
		}
		return 0
	})
	if deps.Metrics != nil {
		if err := s.metrics.register(deps.Metrics); err != nil {
			return nil, fmt.Errorf("store: register metrics: %w", err)
		}
	}
	return s, nil
}

// Open opens DataDir/store.db, binds Addr and starts serving. The Server is
// ready when Open returns nil.
func (s *Server) Open() error {
	s.mu.Lock()
	opened := s.db != nil
	s.mu.Unlock()
	if opened {
		return errors.New("open store server: already opened")
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("open store server: %w", err)
	}
	db, err := boltdb.Open(filepath.Join(s.cfg.DataDir, "store.db"), boltdb.Options{
		LogRetention:  s.cfg.LogRetention,
		MaxBatchTxns:  s.cfg.MaxBatchTxns,
		BatchDelay:    s.cfg.BatchDelay,
		MaxValueBytes: s.cfg.MaxValueBytes,
		Logger:        s.log,
		OnCommit:      s.metrics.observeCommit,
	})
	if err != nil {
		return fmt.Errorf("open store server: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("open store server: listen: %w", err)
	}
	if s.cfg.TLS != nil {
		// HTTP/1.1 only (no "h2" offered): the replication stream takes
		// over its connection, which HTTP/2 cannot give.
		ln = tls.NewListener(ln, s.cfg.TLS.Clone())
	}
	repl := newReplication(s)
	hs := &http.Server{
		Handler:           s.handler(db, repl),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.mu.Lock()
	s.db, s.ln, s.http, s.repl = db, ln, hs, repl
	s.mu.Unlock()
	if err := repl.start(); err != nil {
		_ = ln.Close()
		_ = db.Close()
		return fmt.Errorf("open store server: %w", err)
	}
	go func() {
		defer close(s.serveDone)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("store http server stopped", "err", err)
		}
	}()
	close(s.ready)
	s.log.Info("store serving", "addr", ln.Addr().String(), "path", db.Path(), "lsn", db.LSN(),
		"auth", s.cfg.Token != "", "tls", s.cfg.TLS != nil)
	return nil
}

// Addr returns the bound address once Open has returned, else Config.Addr.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.cfg.Addr
}

// DB returns the database the server serves, nil before Open. The node can
// use it for in-process access (stage 1: app and primary in one process).
func (s *Server) DB() *boltdb.DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db
}

// ReadyCh is closed once the server serves.
func (s *Server) ReadyCh() <-chan struct{} { return s.ready }

// Ready reports whether the server serves and, with a lease, knows who the
// primary is (itself or the lease holder), so that a node is not offered
// traffic while its first lease is still being taken.
func (s *Server) Ready() bool {
	select {
	case <-s.ready:
	default:
		return false
	}
	s.mu.Lock()
	repl := s.repl
	s.mu.Unlock()
	return repl == nil || repl.knowsPrimary()
}

// Status is the store's part of the node's /status page.
type Status struct {
	Addr  string `json:"addr"`
	Path  string `json:"path"`
	Ready bool   `json:"ready"`
	boltdb.Stats
	Replication *ReplicationStatus `json:"replication,omitempty"`
	Error       string             `json:"error,omitempty"`
}

// Status returns live figures (a Status).
func (s *Server) Status() any {
	st := Status{Addr: s.Addr(), Ready: s.Ready()}
	db := s.DB()
	if db == nil {
		return st
	}
	st.Path = db.Path()
	s.mu.Lock()
	repl := s.repl
	s.mu.Unlock()
	if repl != nil {
		rs := repl.status()
		st.Replication = &rs
	}
	stats, err := db.Stats()
	st.Stats = stats
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

// Close stops the server in this order: stop accepting and let in-flight
// requests finish (up to ShutdownTimeout), since each may be waiting for its
// commit and its answer is the acknowledgement; then stop replication
// (lease loop, replica streams, following); then close the DB, which
// fails anything still queued with ErrClosed. Closing the DB first would
// turn acknowledged-to-be writes into errors.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		hs, db, repl := s.http, s.db, s.repl
		s.mu.Unlock()
		var errs []error
		if repl != nil && s.cfg.HandOverOnClose {
			// Before the HTTP server stops: the new primary's vote request
			// comes to it.
			// Bounded well below a stop timeout: when the whole group
			// stops, the replica chosen may be leaving too.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			repl.stepDown(ctx)
			cancel()
		}
		if hs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
			if err := hs.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown http: %w", err))
				_ = hs.Close()
			}
			cancel()
			<-s.serveDone
		}
		// Replication stops after the HTTP server, whose in-flight writes
		// may be waiting for replica acks, and before the DB it reads.
		if repl != nil {
			repl.stop()
		}
		if db != nil {
			if err := db.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("close store server: %w", errors.Join(errs...))
		}
		s.log.Info("store server closed")
	})
	return s.closeErr
}
