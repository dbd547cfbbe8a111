package cdn

import (
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/cdn/purge"
	"github.com/scalestack/scalestack/pkg/settings"
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
// everything else has a default from DefaultConfig and a setting from Settings.
// What is injected (origins, purges, logger, metrics) is in Deps.
type Config struct {
	// Addr is the listen address, host:port. Port 0 picks a free port (see
	// Edge.Addr). Default "127.0.0.1:8000".
	Addr string

	// NodeName names this edge in the X-Edge and Via headers, logs and
	// metrics. Default "edge".
	NodeName string

	// Origin is a fixed origin URL, "http://host:port" (--edge-origin), which
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
	// (--edge-origin-latency 50ms). Default 0.
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

	// TraceStart is what the edge does with a request that carries no
	// usable W3C traceparent when it goes to the origin (a miss, a pass, a
	// revalidation): start a trace, sampled (tracectx.StartSampled, the
	// default) or not (tracectx.StartUnsampled), or send it on without one
	// (tracectx.StartOff; the lb or the app then starts it). A request that
	// carries one goes on with a child of it. A hit goes nowhere and gets
	// none.
	TraceStart tracectx.Start

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
		TraceStart:        tracectx.StartSampled,
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return fieldErr("Addr", "is empty")
	case c.NodeName == "":
		return fieldErr("NodeName", "is empty")
	case c.MaxBytes <= 0:
		return fieldErr("MaxBytes", "%d must be positive", c.MaxBytes)
	case c.MaxObjectBytes <= 0:
		return fieldErr("MaxObjectBytes", "%d must be positive", c.MaxObjectBytes)
	case c.MaxObjectBytes > c.MaxBytes:
		return fieldErr("MaxObjectBytes", "%d is above MaxBytes %d", c.MaxObjectBytes, c.MaxBytes)
	case c.KeepStale < 0:
		return fieldErr("KeepStale", "%v is negative", c.KeepStale)
	case c.OriginLatency < 0:
		return fieldErr("OriginLatency", "%v is negative", c.OriginLatency)
	case c.DialTimeout <= 0:
		return fieldErr("DialTimeout", "%v must be positive", c.DialTimeout)
	case c.OriginTimeout <= 0:
		return fieldErr("OriginTimeout", "%v must be positive", c.OriginTimeout)
	case c.MaxIdleConns < 1:
		return fieldErr("MaxIdleConns", "%d must be at least 1", c.MaxIdleConns)
	case c.ReadHeaderTimeout <= 0:
		return fieldErr("ReadHeaderTimeout", "%v must be positive", c.ReadHeaderTimeout)
	case c.ReadTimeout < 0:
		return fieldErr("ReadTimeout", "%v is negative", c.ReadTimeout)
	case c.WriteTimeout < 0:
		return fieldErr("WriteTimeout", "%v is negative", c.WriteTimeout)
	case c.IdleTimeout < 0:
		return fieldErr("IdleTimeout", "%v is negative", c.IdleTimeout)
	case c.MaxConns < 1:
		return fieldErr("MaxConns", "%d must be at least 1", c.MaxConns)
	case c.MaxHeaderBytes < 1024:
		return fieldErr("MaxHeaderBytes", "%d is below 1024", c.MaxHeaderBytes)
	case c.MaxPurgeBytes < 1:
		return fieldErr("MaxPurgeBytes", "%d must be positive", c.MaxPurgeBytes)
	case c.DrainTimeout <= 0:
		return fieldErr("DrainTimeout", "%v must be positive", c.DrainTimeout)
	case !c.TraceStart.Valid():
		return fieldErr("TraceStart", "%q: want %s", c.TraceStart, settings.Choices(tracectx.Starts...))
	}
	if c.Origin != "" {
		u, err := url.Parse(c.Origin)
		if err != nil {
			return fieldErr("Origin", "%q: %v", c.Origin, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fieldErr("Origin", "%q must be http://host:port or https://host:port", c.Origin)
		}
	}
	return nil
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("edge config", field, format, args...)
}

// Settings returns the edge's settings, bound to c's fields, with c's
// current values as defaults. The listen port (--edge-port) is the node's.
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("edge")
	return []settings.Setting{
		s("edge-origin", "Origin", "fixed origin URL, http://host:port, instead of the lb nodes from membership (any web server will do)", settings.String(&c.Origin)).Formerly("origin"),
		s("edge-origin-latency", "OriginLatency", "simulated distance added before every origin request, e.g. 50ms (duration)", settings.Duration(&c.OriginLatency)).Formerly("origin-latency"),
		s("edge-max-bytes", "MaxBytes", "byte budget of stored responses, bodies and headers (bytes; suffixes KiB, MiB, GiB); least recently used evicted past it", settings.Bytes(&c.MaxBytes)),
		s("edge-max-object-bytes", "MaxObjectBytes", "largest body stored; larger ones are streamed, not stored (bytes; suffixes KiB, MiB, GiB)", settings.Bytes(&c.MaxObjectBytes)),
		s("edge-purge-token", "PurgeToken", "bearer token for POST /_edge/purge and PURGE; empty: purging over HTTP off (NATS purges still work)", settings.String(&c.PurgeToken)),
		s("edge-pass-cookie", "PassCookie", "cookie (the app's session cookie) whose presence sends a request past the cache to the origin; empty: none", settings.String(&c.PassCookie)),
		s("edge-keep-stale", "KeepStale", "how long a stale response with a validator is kept for revalidation (duration)", settings.Duration(&c.KeepStale)),
		s("edge-origin-timeout", "OriginTimeout", "timeout for an origin's response headers (duration)", settings.Duration(&c.OriginTimeout)),
		s("edge-drain-timeout", "DrainTimeout", "how long shutdown waits for in-flight requests (duration)", settings.Duration(&c.DrainTimeout)),
		s("edge-write-timeout", "WriteTimeout", "close a client connection whose response makes no progress this long (duration; 0: never)", settings.Duration(&c.WriteTimeout)),
		s("edge-max-conns", "MaxConns", "most client connections served at once; more wait in the listen queue (count)", settings.Int(&c.MaxConns)),
		s("edge-trace-start", "TraceStart", "for a request to the origin without a W3C traceparent: start a trace, sampled or unsampled, or off (send it on without one)", &c.TraceStart),
	}
}
