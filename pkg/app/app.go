// Package app is the blog: the application every stage of scalestack
// carries and every measurement is made on. It serves HTML pages and a JSON
// API (docs/api.md) over a set of services (accounts, posts, comments,
// media, search, notifications; see Services), each owning its own buckets
// in the store. Side effects that later move to workers go through Jobs;
// sessions go through Sessions. The node builds an App from a Config (the
// settings) and Deps (the store client and what else it injects), calls
// Open, and Close on shutdown.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/settings"
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

// Config holds the app role's settings; what the node injects (the store,
// the job queue, the purger, the cache nodes, logger and metrics) is in
// Deps. The cache's password, TLS and MAC key are settings: values the node
// derives from its own (--cluster-key, --tls-*), not components.
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
	// Sessions selects the session store: "memory" (in this process; a
	// restart or another app node logs users out, so stage 3 needs sticky
	// routing) or "shared" (stage 7: in the store, written through, and
	// cached in the cache tier when Deps.CacheNodes is set; any app node
	// serves any user, and a dead app or cache node logs nobody out).
	// Default "memory". Deps.SessionStore, when set, replaces it.
	Sessions SessionMode
	// MaxMemorySessions caps the sessions Sessions "memory" holds; past it
	// the least recently used is dropped and its user logged out. Without
	// a cap, a client that logs in over and over grows the map until the
	// process runs out of memory. About 200 bytes each. Default 100000
	// (DefaultMaxMemorySessions) (--app-max-memory-sessions).
	MaxMemorySessions int
	// Cache turns the cache tier on or off: "on" reads posts, feed pages,
	// comments and rendered post lists through the cache nodes
	// (cache-aside) and invalidates them on every write
	// (docs/cache-tier.md); "off" reads the store every time. Default "off".
	Cache settings.OnOff
	// CacheTier tunes the cache tier: TTLs, timeouts, the breaker, and the
	// cache's password (the node copies --cache-password into it). Its
	// Nodes, Logger and Metrics are set from Deps, its MACKey from
	// CacheMACKey when that is set.
	CacheTier cachetier.Config
	// CacheMACKey authenticates everything the app puts in the cache tier
	// (sessions, posts, feed pages, comments, rendered post lists) with
	// HMAC-SHA256 (cachetier.Config.MACKey): an entry that does not verify
	// is served from the store instead and counted (/status
	// cache_tier.rejected, scalestack_app_cache_rejected_total), so whoever
	// can write to a cache node cannot log in as someone else or put markup
	// in a page. Every app and worker node of a cluster must have the same
	// key; the node derives it from --cluster-key (label "cache-mac").
	// Empty (default): a development key written in the source, which
	// protects nothing; fit only for a stack nobody else can reach (the
	// loopback stacks that run without a cluster key). At least 16 bytes.
	CacheMACKey []byte
	// CachePages is how many pages of each feed (home, author, tag) are
	// cached, from the first. A write invalidates every cached page of the
	// feeds it touches, so more pages cost more keys per write. Default 5.
	CachePages int
	// SessionTTL is how long a login lasts. Default 14 days.
	SessionTTL time.Duration
	// Jobs selects how side effects run: "inline" (inside the request,
	// stages 1-7) or "queue" (stage 8: published to Deps.JobQueue through
	// the job outbox, outbox.go: the jobs a write causes commit with it in
	// the store, and are published after the answer). Default "inline".
	Jobs JobMode
	// JobOutboxSweep is how often (Jobs "queue") the app looks in the job
	// outbox for jobs that committed with their write and were not
	// published after it: the request failed after the commit (outcome
	// unknown), its app died first, or the queue was down. Default 1s.
	// Every app node sweeps, each with a strong scan on the primary, so a
	// shorter interval costs the primary more for jobs published sooner.
	JobOutboxSweep time.Duration
	// JobOutboxAge is how old an outbox entry (by the time in its job id)
	// must be before a sweep publishes it. Default 3s. The request that
	// wrote it publishes it within milliseconds, so a younger entry is most
	// likely on its way: shorter publishes more jobs twice (the queue
	// drops the second), longer delays the jobs of outcome-unknown writes.
	JobOutboxAge time.Duration
	// ServiceMode says where the blog's services run (--app-services):
	// "local" (default; in this process, over Deps.Store) or "remote"
	// (stage 10: the app is the gateway, and Deps.Services are the clients
	// of the service nodes). Remote, Deps.Services and Deps.SessionStore
	// (the users service's sessions) are required and Deps.Store may be
	// nil; Sessions, JobOutboxSweep and JobOutboxAge are not used. The app
	// keeps no job outbox then: each service writes the events of its own
	// writes (welcome e-mail, indexing, follower and comment notifications,
	// thumbnails) in its own store group, and the one job the gateway still
	// enqueues, a post's view, goes to the job queue (or inline, with Jobs
	// "inline") after the answer, best effort (see views).
	ServiceMode ServiceMode
	// Purge says whether writes purge what they changed at the edges
	// (--app-purge): "on" (default; the node publishes over NATS whenever a
	// NATS server is known) or "off" (edges serve a page until its
	// s-maxage ends). The node sets Deps.Purger when it is on.
	Purge settings.OnOff
	// BcryptCost is the password hashing cost. Default bcrypt.DefaultCost
	// (10, about 50 ms a sign-up or log-in on one core); each step doubles
	// the time. Tests and load runs may lower it to bcrypt.MinCost (4).
	BcryptCost int
	// PageSize is the number of posts on one page of a feed. Default 10.
	PageSize int
	// RateLimit turns the rate limits on log-in, sign-up, posting and
	// commenting on ("on", default) or off ("off"; --app-rate-limit). Off
	// is for load runs that act as more users from one address than the
	// limits allow (`node load --users` past 50, or a sustained rate of
	// posts and comments past RateLimits'); nothing else should need it.
	RateLimit settings.OnOff
	// RateLimits are the limits (ratelimit.go): token buckets per client
	// address and per account, in this app node's memory. Default
	// DefaultRateLimits().
	RateLimits RateLimits
	// TrustedProxies are the networks of the proxies in front of the app
	// (its lb and edge nodes) whose X-Forwarded-For is believed when the
	// rate limits look for the client's address (--app-trusted-proxies,
	// CIDRs). A request from anywhere else is keyed by its peer address,
	// whatever the header says. Default: loopback only
	// (DefaultTrustedProxies), which is where `node up` runs them. Across
	// machines, list the lb and edge hosts: otherwise every client behind
	// an lb shares the lb's buckets; list nothing wider, or clients that
	// reach the app port from there choose their own address.
	TrustedProxies []netip.Prefix
	// Reads says where store reads go (--reads): "primary" (default:
	// every read is strong) or "replicas" (session consistency: any replica
	// that has applied the user's last write, kept in the session, else the
	// primary; so a user always reads their own writes). Replicas take read
	// load off the primary at the cost of pages slightly behind for others.
	Reads ReadMode
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// HTTP server's timeouts. Defaults 5s, 30s (an upload on a slow link),
	// 30s, 120s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Close waits for in-flight requests.
	// Default 10s.
	ShutdownTimeout time.Duration
}

// Deps are what the app role is given rather than told: New takes them
// beside the Config, and Config.Validate does not look at them.
type Deps struct {
	// Store is the store the services use (a *store.Client, or a *store.DB
	// in one process). Required unless Services is set; with
	// Config.ServiceMode "remote" it is not used at all, and may be nil.
	Store store.Store
	// Services, when set, replaces the in-process services built over
	// Store (tests; stage 10's service clients, required with
	// Config.ServiceMode "remote"). The cache tier and purges still wrap
	// them as configured.
	Services *Services
	// SessionStore, when set, is used instead of the one Config.Sessions
	// names (tests; with Config.ServiceMode "remote", required: the users
	// service's sessions, app.NewSessionsClient).
	SessionStore Sessions
	// JobQueue publishes the jobs with Config.Jobs "queue" (the node gives
	// its publisher to the job queue); New fails without one then. With
	// Jobs "inline", when set, it takes each job in the request instead of
	// running it (tests).
	JobQueue Jobs
	// Purger receives the purges of writes with Config.Purge "on" (see
	// WithPurges); nil sends none.
	Purger Purger
	// CacheNodes returns the host:port of every cache node alive now; the
	// node wires it to membership. Used when Cache is "on" or Sessions is
	// "shared". Nil means no cache nodes: the tier answers every lookup
	// from the store (X-App-Cache: BYPASS).
	CacheNodes func() []string
	// ServiceClients returns the state of the service clients behind
	// Services (remote services: calls, retries, each instance's breaker),
	// shown in Status.ServiceClients; the node wires it to its rpc
	// clients' Status. Nil shows none.
	ServiceClients func() []rpc.Status
	// Logger receives structured logs; nil discards them. The node adds
	// node and role attributes.
	Logger *slog.Logger
	// Metrics registers the app's Prometheus metrics; nil does not register.
	Metrics prometheus.Registerer
}

// Errors of New about missing dependencies.
var (
	// ErrNoStore: Deps has neither Store nor Services.
	ErrNoStore = errors.New("no store: Deps.Store (or Deps.Services) is required")
	// ErrNoJobQueue: Config.Jobs is "queue" and Deps.JobQueue is nil.
	ErrNoJobQueue = errors.New("jobs queue needs Deps.JobQueue to publish to")
	// ErrNoServices: Config.ServiceMode is "remote" and Deps.Services is nil.
	ErrNoServices = errors.New("remote services need Deps.Services (the service clients)")
	// ErrNoSessionStore: Config.ServiceMode is "remote" and
	// Deps.SessionStore is nil.
	ErrNoSessionStore = errors.New("remote services need Deps.SessionStore (the users service's sessions)")
)

// DefaultConfig returns the defaults; the node fills the rest.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8081",
		NodeName:          "app",
		Sessions:          SessionsMemory,
		MaxMemorySessions: DefaultMaxMemorySessions,
		Cache:             settings.Off,
		CacheTier:         cachetier.DefaultConfig(),
		CachePages:        5,
		SessionTTL:        14 * 24 * time.Hour,
		Jobs:              JobsInline,
		JobOutboxSweep:    time.Second,
		JobOutboxAge:      3 * time.Second,
		ServiceMode:       ServicesLocal,
		Purge:             settings.On,
		BcryptCost:        bcrypt.DefaultCost,
		PageSize:          10,
		RateLimit:         settings.On,
		RateLimits:        DefaultRateLimits(),
		TrustedProxies:    DefaultTrustedProxies(),
		Reads:             ReadsPrimary,
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
	case c.Reads != "" && c.Reads != "primary" && c.Reads != "replicas":
		return fieldErr("Reads", "%q: want primary or replicas", c.Reads)
	case c.Sessions != SessionsMemory && c.Sessions != SessionsShared:
		return fieldErr("Sessions", "%q: want memory or shared", c.Sessions)
	case c.MaxMemorySessions < 1:
		return fieldErr("MaxMemorySessions", "%d: want at least 1", c.MaxMemorySessions)
	case !c.Cache.Valid():
		return fieldErr("Cache", "%q: want on or off", c.Cache)
	case len(c.CacheMACKey) > 0 && len(c.CacheMACKey) < 16:
		return fieldErr("CacheMACKey", "of %d bytes: want at least 16", len(c.CacheMACKey))
	case c.CachePages < 1 || c.CachePages > 100:
		return fieldErr("CachePages", "%d: want 1 to 100", c.CachePages)
	case !c.Purge.Valid():
		return fieldErr("Purge", "%q: want on or off", c.Purge)
	case c.ServiceMode != "" && c.ServiceMode != ServicesLocal && c.ServiceMode != ServicesRemote:
		return fieldErr("ServiceMode", "%q: want local or remote", c.ServiceMode)
	case c.Jobs != "inline" && c.Jobs != "queue":
		return fieldErr("Jobs", "%q: want inline or queue", c.Jobs)
	case c.Jobs == "queue" && !c.RemoteServices() && (c.JobOutboxSweep <= 0 || c.JobOutboxAge < 0):
		return fieldErr("JobOutboxSweep", "%v must be positive and JobOutboxAge %v not negative", c.JobOutboxSweep, c.JobOutboxAge)
	case c.SessionTTL < time.Minute:
		return fieldErr("SessionTTL", "%v: want at least 1m", c.SessionTTL)
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost:
		return fieldErr("BcryptCost", "%d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	case c.PageSize < 1 || c.PageSize > 100:
		return fieldErr("PageSize", "%d: want 1 to 100", c.PageSize)
	case !c.RateLimit.Valid():
		return fieldErr("RateLimit", "%q: want on or off", c.RateLimit)
	case c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("app config: ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout must be positive")
	case c.ShutdownTimeout <= 0:
		return errors.New("app config: ShutdownTimeout must be positive")
	case c.Outbox == "" && c.DataDir == "":
		return errors.New("app config: Outbox or DataDir is required")
	}
	if err := c.RateLimits.Validate(); err != nil {
		return fmt.Errorf("app config: RateLimits: %w", err)
	}
	if c.Cache == "on" || c.Sessions == "shared" && !c.RemoteServices() {
		if err := c.CacheTier.Validate(); err != nil {
			return settings.Within("app config", "CacheTier", err)
		}
	}
	return nil
}

// QueuesJobs reports whether the app publishes its jobs to the job queue
// (Jobs "queue"), and so needs Deps.JobQueue.
func (c *Config) QueuesJobs() bool { return c.Jobs == JobsQueue }

// ContentGroup is the store group of the content service (posts,
// comments, media) as the gateway's cache tier assumes it with remote
// services, unless CacheTier.Group names another: a service node's group
// defaults to the service's name.
const ContentGroup = "content"

// RemoteServices reports whether the services are remote (ServiceMode
// "remote"): the app is the gateway of stage 10.
func (c *Config) RemoteServices() bool { return c.ServiceMode == ServicesRemote }

// ServicesConfig returns the settings of the blog's service stack, which
// the worker role runs with the app's settings too.
func (c *Config) ServicesConfig() ServicesConfig {
	tier := c.CacheTier
	if c.RemoteServices() && tier.Group == store.DefaultGroup {
		// Posts and comments are the content service's, in its store
		// group: the LSNs the tier's tombstones compare are that group's.
		tier.Group = ContentGroup
	}
	return ServicesConfig{
		BcryptCost:  c.BcryptCost,
		Cache:       c.Cache == settings.On,
		CacheTier:   tier,
		CacheMACKey: c.CacheMACKey,
		CachePages:  c.CachePages,
		PageSize:    c.PageSize,
		Purge:       c.Purge == settings.On,
	}
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("app config", field, format, args...)
}

// Settings returns the app's settings, bound to c's fields, with c's
// current values as defaults (not --app-port, --data or --name, which the
// node owns).
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("app")
	return []settings.Setting{
		s("reads", "Reads", "the stage-4 lever, where store reads go: primary (every read strong) or replicas (any replica that has the user's last write; each user still reads their own writes)", &c.Reads).AsLever(),
		s("cache", "Cache", "the stage-5 lever, the cache tier of app and worker nodes: on (posts, feeds and rendered lists read through the cache nodes, invalidated on writes) or off (the store every time)", &c.Cache).AsLever(),
		s("sessions", "Sessions", "the stage-7 lever, where sessions live: memory (in this app process; needs --sticky behind an lb) or shared (in the store, cached in the cache tier; any app serves any user)", &c.Sessions).AsLever(),
		s("jobs", "Jobs", "the stage-8 lever, how side effects run: inline (inside the request) or queue (published to the job queue for the workers, through the job outbox in the store)", &c.Jobs).AsLever(),
		s("app-max-memory-sessions", "MaxMemorySessions", "with --sessions=memory, most sessions held, about 200 bytes each; the least recently used is dropped past it (count)", settings.Int(&c.MaxMemorySessions)).Formerly("max-memory-sessions"),
		s("app-session-ttl", "SessionTTL", "how long a login lasts, at least 1m (duration)", settings.Duration(&c.SessionTTL)).Formerly("session-ttl"),
		s("app-cache-pages", "CachePages", "pages of each feed kept in the cache tier, from the first (count, 1-100)", settings.Int(&c.CachePages)),
		s("app-cache-ttl", "CacheTier.TTL", "how long a value cached in the cache tier lives at most (duration)", settings.Duration(&c.CacheTier.TTL)),
		s("app-cache-tombstone-ttl", "CacheTier.TombstoneTTL", "how long a written key stays marked, so that no reader fills it with what it read before the write (duration)", settings.Duration(&c.CacheTier.TombstoneTTL)),
		s("app-cache-timeout", "CacheTier.Timeout", "timeout of one call to a cache node (duration)", settings.Duration(&c.CacheTier.Timeout)),
		s("app-job-outbox-sweep", "JobOutboxSweep", "with --jobs=queue, how often the app publishes jobs left in the job outbox: queue down, outcome-unknown writes, a dead app (duration)", settings.Duration(&c.JobOutboxSweep)).Formerly("job-outbox-sweep"),
		s("app-job-outbox-age", "JobOutboxAge", "with --jobs=queue, how old a job in the outbox must be before a sweep publishes it rather than its own request (duration)", settings.Duration(&c.JobOutboxAge)).Formerly("job-outbox-age"),
		s("app-services", "ServiceMode", "where the blog's services run: local (in this process, over the store) or remote (stage 10: the app is a gateway calling the service nodes it finds in membership)", &c.ServiceMode),
		s("app-purge", "Purge", "purge the pages a write changed at the edges over NATS: on, or off (edges serve a page until its s-maxage ends)", &c.Purge).Formerly("purge"),
		s("app-outbox", "Outbox", "folder the app and the worker write outgoing e-mail to, as .eml files", settings.String(&c.Outbox)).Formerly("outbox").ShowDefault("DATA/outbox"),
		s("app-bcrypt-cost", "BcryptCost", "bcrypt cost of password hashes, 4-31; each step doubles the time of a sign-up or log-in (4 is fast, for load runs)", settings.Int(&c.BcryptCost)).Formerly("bcrypt-cost"),
		s("app-page-size", "PageSize", "posts on one page of a feed (count, 1-100)", settings.Int(&c.PageSize)),
		s("app-rate-limit", "RateLimit", "rate limits on log-in, sign-up, posting and commenting per client address and account: on, or off (load runs from one address)", &c.RateLimit).Formerly("rate-limit"),
		s("app-trusted-proxies", "TrustedProxies", "comma-separated CIDRs of the lb and edge nodes whose X-Forwarded-For names the client", settings.Func(
			func() string { return formatPrefixes(c.TrustedProxies) },
			func(v string) error {
				ps, err := ParsePrefixes(v)
				if err == nil {
					c.TrustedProxies = ps
				}
				return err
			})).Formerly("trusted-proxies"),
	}
}

func formatPrefixes(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

// ParsePrefixes reads a comma-separated list of CIDRs (a bare address is
// one host); an empty string is an empty list.
func ParsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// App is the blog role.
type App struct {
	cfg      Config
	log      *slog.Logger
	metrics  prometheus.Registerer // from Deps; nil registers nothing
	svc      Services
	sessions Sessions
	jobs     Jobs
	handlers *Handlers
	// relay publishes the job outbox with Jobs "queue"; nil inline.
	relay   *relay
	web     *web
	handler http.Handler
	// tier is the cache tier, nil when neither the cache nor shared
	// sessions are on.
	tier *cachetier.Tier
	// clients is Deps.ServiceClients.
	clients func() []rpc.Status

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
	serveErr error
	ready    atomic.Bool
	closed   bool
}

// New builds the app from cfg and deps; it binds nothing until Open.
func New(cfg Config, deps Deps) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	remote := cfg.RemoteServices()
	switch {
	case remote && deps.Services == nil:
		return nil, fmt.Errorf("app: %w", ErrNoServices)
	case remote && deps.SessionStore == nil:
		return nil, fmt.Errorf("app: %w", ErrNoSessionStore)
	case deps.Store == nil && deps.Services == nil:
		return nil, fmt.Errorf("app: %w", ErrNoStore)
	case cfg.QueuesJobs() && deps.JobQueue == nil:
		return nil, fmt.Errorf("app: %w", ErrNoJobQueue)
	}
	a := &App{cfg: cfg, log: deps.Logger, metrics: deps.Metrics, clients: deps.ServiceClients}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	// Lines logged with a request's context carry its trace id.
	a.log = tracectx.WithLogger(a.log)
	if cfg.Outbox == "" {
		a.cfg.Outbox = filepath.Join(cfg.DataDir, "outbox")
	}
	if cfg.ServiceMode == "" {
		a.cfg.ServiceMode = ServicesLocal
	}
	var st store.Store
	if deps.Store != nil && !remote {
		// A gateway has no store of its own: whatever Deps.Store it is
		// given, nothing of the app reads or writes it.
		st = localTrace{st: deps.Store, node: cfg.NodeName}
	}
	sdeps := ServicesDeps{Store: st, Services: deps.Services, Purger: deps.Purger,
		CacheNodes: deps.CacheNodes, Logger: a.log, Metrics: deps.Metrics}
	stack, err := NewStack(a.cfg.ServicesConfig(), sdeps)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.svc, a.tier = stack.Services, stack.Tier
	a.sessions = deps.SessionStore
	switch {
	case a.sessions != nil:
	case cfg.Sessions == SessionsShared:
		if a.tier == nil {
			// Shared sessions read through the tier even with the cache off.
			if a.tier, err = newTier(cfg.ServicesConfig(), sdeps); err != nil {
				return nil, fmt.Errorf("app: %w", err)
			}
		}
		a.sessions = NewSharedSessions(st, a.tier)
	default:
		a.sessions = NewMemorySessionsMax(cfg.MaxMemorySessions)
	}
	a.handlers = NewHandlers(a.svc, a.cfg.Outbox, a.log)
	a.jobs = deps.JobQueue
	if a.jobs == nil {
		a.jobs = InlineJobs{H: a.handlers}
	}
	if cfg.Jobs == JobsQueue {
		// The relay reads and deletes outbox entries on the store itself,
		// not through localTrace: its calls belong to no request. A
		// gateway's relay has no outbox (nil store): it only publishes the
		// views after their answers.
		var outbox store.Store
		if !remote {
			outbox = deps.Store
		}
		a.relay = newRelay(outbox, a.jobs, cfg.JobOutboxSweep, cfg.JobOutboxAge, a.log)
		if deps.Metrics != nil {
			if err := deps.Metrics.Register(a.relay); err != nil {
				return nil, fmt.Errorf("app: register outbox metrics: %w", err)
			}
		}
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
// With Jobs "queue" the relay publishes the jobs only between Open and
// Close; before Open they wait in the job outbox.
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
	if a.tier != nil {
		if err := a.tier.Open(); err != nil {
			ln.Close()
			return fmt.Errorf("app: %w", err)
		}
	}
	if a.relay != nil {
		a.relay.Open()
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
	a.log.Info("app listening", "addr", ln.Addr().String(), "sessions", a.cfg.Sessions, "cache", a.cfg.Cache, "jobs", a.cfg.Jobs, "services", a.cfg.ServiceMode)
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
// ShutdownTimeout), then stops the job outbox's relay (after the requests,
// which hand it their jobs; what it has not published stays in the outbox
// for the next sweep of any app node), then closes the cache tier's
// connections (after the requests, which invalidate through them) and
// returns. The store and the job queue are the node's to close, after.
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
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		defer cancel()
		err = srv.Shutdown(ctx)
		<-done
		if err != nil {
			_ = srv.Close()
			err = fmt.Errorf("app: close: %w", err)
		}
	}
	if a.relay != nil && srv != nil {
		a.relay.Close()
	}
	if a.tier != nil {
		if terr := a.tier.Close(); terr != nil && err == nil {
			err = fmt.Errorf("app: close cache tier: %w", terr)
		}
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serveErr
}

// Status is the app's part of the node's /status page.
type Status struct {
	Ready    bool   `json:"ready"`
	Addr     string `json:"addr"`
	Sessions string `json:"sessions"`
	Cache    string `json:"cache"`
	Jobs     string `json:"jobs"`
	// Services is where the services run: local, or remote (a gateway).
	Services string `json:"services"`
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors_5xx"`
	// ClientGone counts the requests whose client went away (closed the
	// connection, or gave up at its own timeout) before the answer: logged
	// and counted as 499, nginx's code for it, not as errors of the app.
	ClientGone int64 `json:"client_gone"`
	InFlight   int64 `json:"in_flight"`
	// JobsDone counts the jobs run (inline) or published (queue);
	// JobsError those that failed, and with a queue the views dropped.
	JobsDone  int64 `json:"jobs_done"`
	JobsError int64 `json:"jobs_failed"`
	// Outbox has the job outbox's figures with --jobs=queue.
	Outbox *OutboxStatus `json:"outbox,omitempty"`
	// LiveSessions counts sessions held in memory (memory sessions only).
	LiveSessions int `json:"live_sessions,omitempty"`
	// CacheTier has the cache tier's figures (hits, misses, bypasses,
	// errors, invalidations, entries rejected as forged, nodes) when the
	// tier is in use.
	CacheTier *cachetier.Stats `json:"cache_tier,omitempty"`
	// ServiceClients are the service clients' calls and breakers (remote
	// services, when the node gives them: Deps.ServiceClients).
	ServiceClients []rpc.Status `json:"service_clients,omitempty"`
	// RateLimited counts the requests refused with 429, by "action/by"
	// (login/ip, login/account, signup/ip, post/ip, post/account,
	// comment/ip, comment/account).
	RateLimited map[string]uint64 `json:"rate_limited"`
}

// Status returns live figures.
func (a *App) Status() any {
	s := Status{
		Ready: a.Ready(), Addr: a.Addr(), Sessions: string(a.cfg.Sessions), Cache: string(a.cfg.Cache), Jobs: string(a.cfg.Jobs),
		Services: string(a.cfg.ServiceMode),
		Requests: a.web.requests.Load(), Errors: a.web.errors.Load(), ClientGone: a.web.clientGone.Load(),
		InFlight: a.web.inFlight.Load(),
		JobsDone: a.web.jobsDone.Load(), JobsError: a.web.jobsFailed.Load(),
		RateLimited: a.web.limits.status(),
	}
	if a.relay != nil {
		ob := a.relay.status()
		s.Outbox = &ob
		s.JobsDone, s.JobsError = ob.Published, ob.PublishFailures+ob.Dropped
	}
	if ms, ok := a.sessions.(*MemorySessions); ok {
		s.LiveSessions = ms.Len()
	}
	if a.tier != nil {
		ts := a.tier.Stats()
		s.CacheTier = &ts
	}
	if a.clients != nil {
		s.ServiceClients = a.clients()
	}
	return s
}
