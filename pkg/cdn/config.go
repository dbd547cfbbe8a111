package cdn

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/cdn/purge"
)

// Origins yields the current origins, host:port of the load balancers the
// edge forwards misses to; the node implements it over membership. The edge
// calls it for every origin request, so it must be cheap and safe for
// concurrent use.
type Origins interface {
	Origins() []string
}

// StaticOrigins is a fixed list of origins, for tests and for running
// without membership.
type StaticOrigins []string

// Origins returns the list.
func (s StaticOrigins) Origins() []string { return s }

// Purges delivers purge messages published by the app; the node implements
// it over a NATS connection. Subscribe calls deliver with each message's
// payload until stop is called, and missed whenever messages may have been
// lost: when a subscription made in the background becomes live (what was
// published before it never arrived) and after a reconnect (core NATS does
// not keep what a disconnected subscriber missed). The edge then drops
// everything it stored, since a page it holds may be one a lost purge named.
// An implementation that subscribes in the background may also have a
// method Subscribed() bool: the edge is not Ready until it reports true, so
// that nothing relies on its cache before purges reach it.
type Purges interface {
	Subscribe(subject string, deliver func(data []byte), missed func()) (stop func(), err error)
}

// PurgeSubject is the NATS subject purge messages are published on. Its
// payload is a PurgeRequest in JSON (package purge, docs/edge.md).
const PurgeSubject = purge.Subject

// Config holds an edge's settings. The node fills in Addr and NodeName;
// everything else has a default from DefaultConfig and a flag from AddFlags.
// What is injected (origins, purges, logger, metrics) is in Deps.
type Config struct {
	// Addr is the listen address, host:port. Port 0 picks a free port (see
	// Edge.Addr). Default "127.0.0.1:8000".
	Addr string

	// NodeName names this edge in the X-Edge and Via headers, logs and
	// metrics. Default "edge".
	NodeName string

	// Origin is a fixed origin URL, "http://host:port" (--origin), which
	// takes precedence over Deps.Origins. Any web server will do. Empty
	// means the origins come from Deps.Origins.
	Origin string

	// MaxBytes is the byte budget of stored responses (bodies, headers and
	// per-entry overhead); past it the least recently used are evicted.
	// More holds more of a site at the cost of memory. Default 256 MiB.
	MaxBytes int64

	// MaxObjectBytes is the largest body stored. Larger bodies are streamed
	// from the origin to the client and not stored, so one big file cannot
	// flush the cache. Default 8 MiB.
	MaxObjectBytes int64

	// KeepStale is how long a stored response that has a validator (ETag or
	// Last-Modified) is kept past the end of its freshness and stale
	// windows, so that it can be revalidated with a cheap 304 instead of
	// fetched again. Longer saves origin bandwidth at the cost of budget
	// held by stale entries (they are evicted first when unused). Default 1h.
	KeepStale time.Duration

	// OriginLatency is added before every origin request, to make the
	// distance between an edge and its origin visible on one machine
	// (--origin-latency 50ms). Default 0.
	OriginLatency time.Duration

	// PurgeToken protects the HTTP purge endpoint (POST /_edge/purge and the
	// PURGE method), sent as "Authorization: Bearer <token>". Empty disables
	// purging over HTTP; NATS purges are unaffected. Default empty.
	PurgeToken string

	// PassCookie names a cookie (the app's session cookie) whose presence
	// sends a request straight to the origin, neither served from nor
	// stored in the cache, so that a signed-in reader never sees the
	// anonymous copy of a page. Empty disables it. Default empty.
	PassCookie string

	// DialTimeout bounds connecting to an origin. Default 2s.
	DialTimeout time.Duration

	// OriginTimeout bounds the wait for an origin's response headers after
	// the request was sent; past it the request counts as an origin error
	// (stale-if-error may then apply, else 504). Default 30s.
	OriginTimeout time.Duration

	// MaxIdleConns is the number of idle keep-alive connections kept per
	// origin. Default 256.
	MaxIdleConns int

	// ReadHeaderTimeout bounds reading a client's request headers, which is
	// what cuts slow (slowloris) clients. Default 10s.
	ReadHeaderTimeout time.Duration

	// ReadTimeout bounds reading a whole client request, body included.
	// 0 means no limit. Default 60s.
	ReadTimeout time.Duration

	// WriteTimeout is how long a response may wait on a client that takes
	// none of it: when a write makes no progress for this long the
	// connection is closed, as nginx's send_timeout. It bounds stalls, not
	// whole responses (writes go out in pieces of at most 256 KiB, each
	// with a fresh deadline), so a long download that the client keeps
	// reading is never cut, while a client that stops reading frees its
	// connection, goroutine and buffers within WriteTimeout. 0 means never,
	// and such a client then holds them for good. Default 60s
	// (--edge-write-timeout).
	WriteTimeout time.Duration

	// IdleTimeout is how long a client keep-alive connection may stay idle.
	// Default 120s.
	IdleTimeout time.Duration

	// MaxConns is the most client connections served at once. At the cap
	// the edge stops accepting: further clients wait in the kernel's
	// listen queue until a connection closes, as with HAProxy's maxconn,
	// rather than being refused. Each connection costs a goroutine and
	// its buffers (about 10 KiB idle). Default 10000 (--edge-max-conns).
	MaxConns int

	// MaxHeaderBytes bounds a client's request headers. Default 64 KiB.
	MaxHeaderBytes int

	// MaxPurgeBytes bounds the body of an HTTP purge request. Default 1 MiB.
	MaxPurgeBytes int64

	// DrainTimeout bounds how long Close waits for in-flight requests before
	// closing their connections. Default 30s.
	DrainTimeout time.Duration
}

// Deps are what an edge is given rather than told: New takes them beside
// the Config, and Config.Validate does not look at them.
type Deps struct {
	// Origins yields the load balancers to forward misses to, spread round
	// robin; the node implements it over membership. Used when
	// Config.Origin is empty; New fails when both are missing.
	Origins Origins

	// Purges, when not nil, delivers purge messages on PurgeSubject. Nil
	// means purges arrive over HTTP only (Config.PurgeToken).
	Purges Purges

	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger

	// Metrics registers the edge's Prometheus collectors. Nil does not
	// register them.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Addr:              "127.0.0.1:8000",
		NodeName:          "edge",
		MaxBytes:          256 << 20,
		MaxObjectBytes:    8 << 20,
		KeepStale:         time.Hour,
		DialTimeout:       2 * time.Second,
		OriginTimeout:     30 * time.Second,
		MaxIdleConns:      256,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxConns:          10000,
		MaxHeaderBytes:    64 << 10,
		MaxPurgeBytes:     1 << 20,
		DrainTimeout:      30 * time.Second,
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("edge config: Addr is empty")
	case c.NodeName == "":
		return errors.New("edge config: NodeName is empty")
	case c.MaxBytes <= 0:
		return fmt.Errorf("edge config: MaxBytes %d must be positive", c.MaxBytes)
	case c.MaxObjectBytes <= 0:
		return fmt.Errorf("edge config: MaxObjectBytes %d must be positive", c.MaxObjectBytes)
	case c.MaxObjectBytes > c.MaxBytes:
		return fmt.Errorf("edge config: MaxObjectBytes %d is above MaxBytes %d", c.MaxObjectBytes, c.MaxBytes)
	case c.KeepStale < 0:
		return fmt.Errorf("edge config: KeepStale %v is negative", c.KeepStale)
	case c.OriginLatency < 0:
		return fmt.Errorf("edge config: OriginLatency %v is negative", c.OriginLatency)
	case c.DialTimeout <= 0:
		return fmt.Errorf("edge config: DialTimeout %v must be positive", c.DialTimeout)
	case c.OriginTimeout <= 0:
		return fmt.Errorf("edge config: OriginTimeout %v must be positive", c.OriginTimeout)
	case c.MaxIdleConns < 1:
		return fmt.Errorf("edge config: MaxIdleConns %d must be at least 1", c.MaxIdleConns)
	case c.ReadHeaderTimeout <= 0:
		return fmt.Errorf("edge config: ReadHeaderTimeout %v must be positive", c.ReadHeaderTimeout)
	case c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0:
		return errors.New("edge config: ReadTimeout, WriteTimeout and IdleTimeout must not be negative")
	case c.MaxConns < 1:
		return fmt.Errorf("edge config: MaxConns %d must be at least 1", c.MaxConns)
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("edge config: MaxHeaderBytes %d is below 1024", c.MaxHeaderBytes)
	case c.MaxPurgeBytes < 1:
		return fmt.Errorf("edge config: MaxPurgeBytes %d must be positive", c.MaxPurgeBytes)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("edge config: DrainTimeout %v must be positive", c.DrainTimeout)
	}
	if c.Origin != "" {
		u, err := url.Parse(c.Origin)
		if err != nil {
			return fmt.Errorf("edge config: Origin %q: %w", c.Origin, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("edge config: Origin %q must be http://host:port or https://host:port", c.Origin)
		}
	}
	return nil
}

// AddFlags registers the edge's flags on fs, with c's current values as
// defaults. The listen port (--edge-port) is the node's.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Origin, "origin", c.Origin, "fixed origin URL for the edge, http://host:port (instead of the lb nodes from membership)")
	fs.DurationVar(&c.OriginLatency, "origin-latency", c.OriginLatency, "simulated distance added to every edge origin request, e.g. 50ms")
	fs.Int64Var(&c.MaxBytes, "edge-max-bytes", c.MaxBytes, "byte budget of the edge's stored responses (LRU eviction past it)")
	fs.Int64Var(&c.MaxObjectBytes, "edge-max-object-bytes", c.MaxObjectBytes, "largest body the edge stores; larger ones are streamed")
	fs.StringVar(&c.PurgeToken, "edge-purge-token", c.PurgeToken, "bearer token for POST /_edge/purge and PURGE (empty: HTTP purge off)")
	fs.StringVar(&c.PassCookie, "edge-pass-cookie", c.PassCookie, "cookie (the app's session cookie) that sends a request past the edge's cache")
	fs.DurationVar(&c.KeepStale, "edge-keep-stale", c.KeepStale, "how long a stale response with a validator is kept for revalidation")
	fs.DurationVar(&c.OriginTimeout, "edge-origin-timeout", c.OriginTimeout, "timeout for an origin's response headers")
	fs.DurationVar(&c.DrainTimeout, "edge-drain-timeout", c.DrainTimeout, "how long shutdown waits for in-flight requests")
	fs.DurationVar(&c.WriteTimeout, "edge-write-timeout", c.WriteTimeout, "close a client connection whose response makes no progress this long (0: never)")
	fs.IntVar(&c.MaxConns, "edge-max-conns", c.MaxConns, "most client connections at once; more wait in the listen queue")
}
