// Package app is the blog: the application every stage of scalestack
// carries and every measurement is made on. It serves HTML pages and a JSON
// API (docs/api.md) over a set of services (accounts, posts, comments,
// media, search, notifications; see Services), each owning its own buckets
// in the store. Side effects that later move to workers go through Jobs;
// sessions go through Sessions. The node builds an App from a Config with
// the store client injected, calls Open, and Close on shutdown.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/store"
)

// Body and upload limits. A request over one gets 413 with a message
// naming the limit.
const (
	// MaxJSONBody bounds a JSON API request body (a post of posts.MaxBody
	// bytes fits with room for JSON escaping).
	MaxJSONBody = 256 << 10
	// MaxFormBody bounds an HTML form without a file.
	MaxFormBody = 256 << 10
	// MaxUploadBody bounds a request carrying an image (media.MaxBytes plus
	// the form's other fields and multipart framing).
	MaxUploadBody = 5<<20 + 300<<10
)

// Config configures the app role.
type Config struct {
	// Addr is the HTTP listen address, host:port; port 0 picks a free one.
	// The node fills it from --addr and --app-port.
	Addr string
	// NodeName names this node in the X-Served-By header and in logs.
	NodeName string
	// DataDir is the node's data directory; the outbox lives under it
	// unless Outbox is set.
	DataDir string
	// Outbox is the folder welcome e-mails (.eml files) are written to.
	// Default: DataDir/outbox.
	Outbox string
	// Store is the store the services use (a *store.Client, or a *store.DB
	// in one process). Required; injected by the node.
	Store store.Store
	// Services, when set, replaces the in-process services built over
	// Store (tests; stage 10's service clients).
	Services *Services
	// Sessions selects the session store: "memory" (in this process; a
	// restart or another app node logs users out). Default "memory".
	Sessions string
	// SessionStore, when set, is used instead of the one Sessions names
	// (the shared cache-backed store of a later stage plugs in here).
	SessionStore Sessions
	// SessionTTL is how long a login lasts. Default 14 days.
	SessionTTL time.Duration
	// Jobs selects how side effects run: "inline" (inside the request).
	// Default "inline".
	Jobs string
	// JobQueue, when set, is used instead of the one Jobs names.
	JobQueue Jobs
	// BcryptCost is the password hashing cost. Default bcrypt.DefaultCost
	// (10, about 50 ms a sign-up or log-in on one core); each step doubles
	// the time. Tests and load runs may lower it to bcrypt.MinCost (4).
	BcryptCost int
	// PageSize is the number of posts on one page of a feed. Default 10.
	PageSize int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// HTTP server's timeouts. Defaults 5s, 30s (an upload on a slow link),
	// 30s, 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Close waits for in-flight requests.
	// Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives structured logs; nil discards them. The node adds
	// node and role attributes.
	Logger *slog.Logger
	// Metrics registers the app's Prometheus metrics; nil does not register.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults; the node fills the rest.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8081",
		NodeName:          "app",
		Sessions:          "memory",
		SessionTTL:        14 * 24 * time.Hour,
		Jobs:              "inline",
		BcryptCost:        bcrypt.DefaultCost,
		PageSize:          10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   10 * time.Second,
	}
}

// Validate reports the first unusable field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil && c.Services == nil:
		return errors.New("app config: Store is required")
	case c.SessionStore == nil && c.Sessions != "memory":
		return fmt.Errorf("app config: Sessions %q: want memory", c.Sessions)
	case c.JobQueue == nil && c.Jobs != "inline":
		return fmt.Errorf("app config: Jobs %q: want inline", c.Jobs)
	case c.SessionTTL < time.Minute:
		return fmt.Errorf("app config: SessionTTL %v: want at least 1m", c.SessionTTL)
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost:
		return fmt.Errorf("app config: BcryptCost %d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	case c.PageSize < 1 || c.PageSize > 100:
		return fmt.Errorf("app config: PageSize %d: want 1 to 100", c.PageSize)
	case c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("app config: ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout must be positive")
	case c.ShutdownTimeout <= 0:
		return errors.New("app config: ShutdownTimeout must be positive")
	case c.Outbox == "" && c.DataDir == "":
		return errors.New("app config: Outbox or DataDir is required")
	}
	return nil
}

// AddFlags registers the app's flags on fs (not --app-port, --data or
// --name, which the node registers).
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Sessions, "sessions", c.Sessions, "session store: memory (in this app process)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", c.SessionTTL, "how long a login lasts")
	fs.StringVar(&c.Jobs, "jobs", c.Jobs, "how side effects run: inline (inside the request)")
	fs.StringVar(&c.Outbox, "outbox", c.Outbox, "folder for outgoing e-mail as .eml files (default <data>/outbox)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", c.BcryptCost, "bcrypt cost of password hashes (4 is fast, for load tests)")
	fs.IntVar(&c.PageSize, "app-page-size", c.PageSize, "posts per page of a feed")
}

// App is the blog role.
type App struct {
	cfg      Config
	log      *slog.Logger
	svc      Services
	sessions Sessions
	jobs     Jobs
	handlers *Handlers
	web      *web
	handler  http.Handler

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
	serveErr error
	ready    atomic.Bool
	closed   bool
}

// New builds the app from cfg; it binds nothing until Open.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Outbox == "" {
		a.cfg.Outbox = filepath.Join(cfg.DataDir, "outbox")
	}
	if cfg.Services != nil {
		a.svc = *cfg.Services
	} else {
		a.svc = NewServices(localTrace{st: cfg.Store, node: cfg.NodeName}, cfg.BcryptCost)
	}
	a.sessions = cfg.SessionStore
	if a.sessions == nil {
		a.sessions = NewMemorySessions()
	}
	a.handlers = NewHandlers(a.svc, a.cfg.Outbox, a.log)
	a.jobs = cfg.JobQueue
	if a.jobs == nil {
		a.jobs = InlineJobs{H: a.handlers}
	}
	w, err := newWeb(a)
	if err != nil {
		return nil, err
	}
	a.web = w
	a.handler = w.handler()
	return a, nil
}

// Handler returns the app's HTTP handler (what Open serves), for tests.
func (a *App) Handler() http.Handler { return a.handler }

// Services returns the services the app uses.
func (a *App) Services() Services { return a.svc }

// JobHandlers returns the handlers of the app's jobs.
func (a *App) JobHandlers() *Handlers { return a.handlers }

// Open binds the listener and starts serving.
func (a *App) Open() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.srv != nil || a.closed {
		return errors.New("app: open: already opened")
	}
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("app: listen: %w", err)
	}
	a.ln = ln
	a.srv = &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: a.cfg.ReadHeaderTimeout,
		ReadTimeout:       a.cfg.ReadTimeout,
		WriteTimeout:      a.cfg.WriteTimeout,
		IdleTimeout:       a.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("app: serve", "err", err)
			a.mu.Lock()
			a.serveErr = err
			a.mu.Unlock()
			a.ready.Store(false)
		}
	}()
	a.ready.Store(true)
	a.log.Info("app listening", "addr", ln.Addr().String(), "sessions", a.cfg.Sessions, "jobs", a.cfg.Jobs)
	return nil
}

// Addr returns the bound address, or "" before Open.
func (a *App) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Ready reports whether the app is serving.
func (a *App) Ready() bool { return a.ready.Load() }

// Close stops taking connections and waits for in-flight requests (up to
// ShutdownTimeout), then returns. The store is the node's to close, after.
func (a *App) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	srv, done := a.srv, a.done
	a.mu.Unlock()
	a.ready.Store(false)
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(ctx)
	<-done
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("app: close: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serveErr
}

// Status is the app's part of the node's /status page.
type Status struct {
	Ready     bool   `json:"ready"`
	Addr      string `json:"addr"`
	Sessions  string `json:"sessions"`
	Jobs      string `json:"jobs"`
	Requests  int64  `json:"requests"`
	Errors    int64  `json:"errors_5xx"`
	InFlight  int64  `json:"in_flight"`
	JobsDone  int64  `json:"jobs_done"`
	JobsError int64  `json:"jobs_failed"`
	// LiveSessions counts sessions held in memory (memory sessions only).
	LiveSessions int `json:"live_sessions,omitempty"`
}

// Status returns live figures.
func (a *App) Status() any {
	s := Status{
		Ready: a.Ready(), Addr: a.Addr(), Sessions: a.cfg.Sessions, Jobs: a.cfg.Jobs,
		Requests: a.web.requests.Load(), Errors: a.web.errors.Load(), InFlight: a.web.inFlight.Load(),
		JobsDone: a.web.jobsDone.Load(), JobsError: a.web.jobsFailed.Load(),
	}
	if ms, ok := a.sessions.(*MemorySessions); ok {
		s.LiveSessions = ms.Len()
	}
	return s
}
