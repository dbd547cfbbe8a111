package lb

import (
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/settings"
)

// Policy is how the balancer chooses among healthy backends (--lb-policy).
type Policy string

// Policies a Config may name.
const (
	// PolicyRoundRobin sends each request to the next healthy backend in turn.
	PolicyRoundRobin Policy = "round-robin"
	// PolicyWeighted is nginx's smooth weighted round robin over Target.Weight.
	PolicyWeighted Policy = "weighted"
	// PolicyLeastConn sends each request to the backend with the fewest
	// requests in flight, ties broken in turn.
	PolicyLeastConn Policy = "least-conn"
)

// Policies lists the policies, the default first.
var Policies = []Policy{PolicyRoundRobin, PolicyWeighted, PolicyLeastConn}

// String returns the policy's name.
func (p Policy) String() string { return string(p) }

// Set takes a policy's name (flag.Value).
func (p *Policy) Set(s string) error {
	v, err := settings.OneOf(s, Policies...)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Config holds a load balancer's settings. The node fills in Addr and
// NodeName; everything else has a default from DefaultConfig and a setting
// from Settings. What is injected (discovery, logger, metrics) is in Deps.
type Config struct {
	// Addr is the listen address, host:port. Port 0 picks a free port (see
	// LB.Addr). Default "127.0.0.1:8080".
	Addr string

	// NodeName names this balancer in the X-LB and Via headers, in logs and in
	// metrics. Default "lb".
	NodeName string

	// Backends is a static list of backend addresses, host:port, used when
	// Deps.Discovery is nil (--lb-backends). Each backend is named by its
	// address. Empty means the backends come from Deps.Discovery.
	Backends []string

	// DiscoveryInterval is how often Discovery is polled. A backend that
	// joins takes traffic after at most this long plus one health check.
	// Shorter costs a call to Backends() per tick. Default 200ms.
	DiscoveryInterval time.Duration

	// Policy chooses among healthy backends: PolicyRoundRobin (default),
	// PolicyWeighted or PolicyLeastConn.
	Policy Policy

	// Sticky keeps a client on one backend while it has a session (stages 3
	// to 6, where sessions live in app memory). The balancer routes by its
	// own affinity cookie, set when a backend sets StickyCookie, and falls
	// back to a hash of the session cookie so that several balancers agree.
	// Default false.
	Sticky bool

	// StickyCookie is the name of the app's session cookie. Default
	// "blog_session", the name pkg/app uses.
	StickyCookie string

	// AffinityCookie is the cookie in which the balancer remembers the
	// backend that holds a client's session. Default "lb_node".
	AffinityCookie string

	// HealthPath is the path of the active health check, GET
	// http://<backend><HealthPath> (or Target.HealthAddr); a 200 means
	// ready. Empty disables active checks (backends are then judged by
	// passive ejection only).
	// Default "/readyz".
	HealthPath string

	// HealthInterval is the time between two active checks of one backend.
	// Shorter notices failures sooner at the cost of more check requests.
	// Default 1s.
	HealthInterval time.Duration

	// HealthTimeout bounds one active check. Default 1s.
	HealthTimeout time.Duration

	// Rise is how many consecutive passing checks bring an unhealthy backend
	// back. A backend that has not been healthy yet (a node starting up)
	// needs one. Default 2.
	Rise int

	// Fall is how many consecutive failing checks take a backend out.
	// Default 2.
	Fall int

	// EjectConsecutiveErrors ejects a backend after this many consecutive
	// connection errors (refused, reset, timed out) on proxied requests.
	// 0 disables. Default 3.
	EjectConsecutiveErrors int

	// EjectConsecutive5xx ejects a backend after this many consecutive 5xx
	// responses. A 503 with Retry-After does not count: it is the app
	// reporting that a dependency (the store) is down, which every app
	// shares, and the active checks decide whether the app itself is.
	// 0 disables. Default 5.
	EjectConsecutive5xx int

	// EjectBaseTime is how long a first ejection lasts; each further
	// ejection of the same backend doubles it, up to EjectMaxTime, and the
	// count decays while the backend behaves. Default 5s.
	EjectBaseTime time.Duration

	// EjectMaxTime caps one ejection. Default 2m.
	EjectMaxTime time.Duration

	// MaxEjectionPercent caps the share of backends passively ejected at
	// once, so that a fault shared by all nodes (the store is down) does not
	// empty the pool; at least one backend may always be ejected.
	// Default 50.
	MaxEjectionPercent int

	// Retries is how many times a request may be sent again to another
	// backend, when that is safe. 0 disables retries. Default 2.
	Retries int

	// RetryBudgetRatio is the share of requests that may be retries, over a
	// 10-second window (0.2 = 20%). Default 0.2.
	RetryBudgetRatio float64

	// RetryMinPerSecond is a floor of retries per second allowed whatever
	// the request rate, so that a quiet balancer can still retry. Default 10.
	RetryMinPerSecond int

	// RetryOnGatewayError also retries idempotent requests that a backend
	// answered with 502, 503 or 504. Default true.
	RetryOnGatewayError bool

	// DialTimeout bounds connecting to a backend. Default 2s.
	DialTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for a backend's response headers
	// after the request was sent; past it the client gets 504. Default 30s.
	ResponseHeaderTimeout time.Duration

	// MaxIdleConns is the number of idle keep-alive connections kept per
	// backend. Too few makes the balancer dial under load. Default 256.
	MaxIdleConns int

	// ReadHeaderTimeout bounds reading a client's request headers; it is
	// what cuts slow (slowloris) clients. Default 10s.
	ReadHeaderTimeout time.Duration

	// ReadTimeout bounds reading a whole client request, body included.
	// 0 means no limit. Default 60s.
	ReadTimeout time.Duration

	// WriteTimeout is how long a response may wait on a client that takes
	// none of it: when the client has accepted no byte for this long while
	// bytes wait, its connection is closed, as nginx's send_timeout. It
	// bounds stalls, not whole responses, so a stream or a long download
	// that the client keeps reading is never cut, while a client that stops
	// reading frees its connection, buffers and backend connection within
	// WriteTimeout. 0 means never: such a client then holds them for good.
	// Default 60s (--lb-write-timeout).
	WriteTimeout time.Duration

	// IdleTimeout is how long a client keep-alive connection may stay idle.
	// Default 120s.
	IdleTimeout time.Duration

	// MaxConns is the most client connections served at once. At the cap
	// the balancer stops accepting: further clients wait in the kernel's
	// listen queue until a connection closes, as with HAProxy's maxconn,
	// rather than being refused. A connection costs its buffers (8 KiB in
	// a loop, 16 KiB with a goroutine, more while a request is under way)
	// and, while a request is proxied, a backend connection: a second
	// descriptor. Default 10000 (--lb-max-conns).
	MaxConns int

	// MaxHeaderBytes bounds a client's request head (431 beyond); one line
	// may hold at most 8 KiB whatever this says. Default 64 KiB.
	MaxHeaderBytes int

	// DrainTimeout bounds how long Close waits for in-flight requests before
	// closing their connections. Default 30s.
	DrainTimeout time.Duration

	// EventLoops is how many epoll event loops serve client connections
	// (Linux): each owns its connections and the backend connections their
	// requests use, as nginx's and HAProxy's workers do (loop_linux.go).
	// A connection whose request has a body, or whose response is chunked
	// or delimited by close, is handed to a goroutine of its own for the
	// rest of its life. 0 serves every connection from a goroutine of its
	// own. Default GOMAXPROCS on Linux, 0 elsewhere.
	EventLoops int

	// TrustForwarded keeps an X-Forwarded-Proto sent by the client (set it
	// when the balancer sits behind an edge that terminates TLS). When false
	// the balancer sets it from its own listener. Default false.
	TrustForwarded bool

	// TraceStart is what the balancer does with a request that carries no
	// usable W3C traceparent (an entry point, stages 3-5): start a trace,
	// sampled (tracectx.StartSampled, the default) or not
	// (tracectx.StartUnsampled), or send it on without one
	// (tracectx.StartOff; the app then starts it). A request that carries
	// one always goes on with a child of it: the same trace id, the
	// balancer's own span id as the parent. Writing the field costs about
	// 70 bytes per request and no allocation.
	TraceStart tracectx.Start
}

// Deps are what a load balancer is given rather than told: New takes them
// beside the Config, and Config.Validate does not look at them.
type Deps struct {
	// Discovery yields the backends (the app nodes' HTTP addresses); the
	// node implements it over membership. Nil uses Config.Backends as a
	// static list; New fails when both are empty.
	Discovery Discovery

	// Logger receives structured logs. Nil discards them.
	Logger *slog.Logger

	// Metrics registers the balancer's Prometheus collectors. Nil does not
	// register them.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults documented on each Config field.
func DefaultConfig() Config {
	return Config{
		Addr:                   "127.0.0.1:8080",
		NodeName:               "lb",
		DiscoveryInterval:      200 * time.Millisecond,
		Policy:                 PolicyRoundRobin,
		StickyCookie:           "blog_session",
		AffinityCookie:         "lb_node",
		HealthPath:             "/readyz",
		HealthInterval:         time.Second,
		HealthTimeout:          time.Second,
		Rise:                   2,
		Fall:                   2,
		EjectConsecutiveErrors: 3,
		EjectConsecutive5xx:    5,
		EjectBaseTime:          5 * time.Second,
		EjectMaxTime:           2 * time.Minute,
		MaxEjectionPercent:     50,
		Retries:                2,
		RetryBudgetRatio:       0.2,
		RetryMinPerSecond:      10,
		RetryOnGatewayError:    true,
		DialTimeout:            2 * time.Second,
		ResponseHeaderTimeout:  30 * time.Second,
		MaxIdleConns:           256,
		ReadHeaderTimeout:      10 * time.Second,
		ReadTimeout:            60 * time.Second,
		WriteTimeout:           60 * time.Second,
		IdleTimeout:            120 * time.Second,
		MaxConns:               10000,
		MaxHeaderBytes:         64 << 10,
		DrainTimeout:           30 * time.Second,
		EventLoops:             defaultEventLoops(),
		TraceStart:             tracectx.StartSampled,
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return fieldErr("Addr", "is empty")
	case c.NodeName == "":
		return fieldErr("NodeName", "is empty")
	case c.DiscoveryInterval <= 0:
		return fieldErr("DiscoveryInterval", "%v must be positive", c.DiscoveryInterval)
	case c.Policy != PolicyRoundRobin && c.Policy != PolicyWeighted && c.Policy != PolicyLeastConn:
		return fieldErr("Policy", "%q: want %s", c.Policy, settings.Choices(Policies...))
	case c.Sticky && c.StickyCookie == "":
		return fieldErr("StickyCookie", "is empty while Sticky is set")
	case c.Sticky && c.AffinityCookie == "":
		return fieldErr("AffinityCookie", "is empty while Sticky is set")
	case c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/"):
		return fieldErr("HealthPath", "%q must start with /", c.HealthPath)
	case c.HealthPath != "" && c.HealthInterval <= 0:
		return fieldErr("HealthInterval", "%v must be positive", c.HealthInterval)
	case c.HealthPath != "" && c.HealthTimeout <= 0:
		return fieldErr("HealthTimeout", "%v must be positive", c.HealthTimeout)
	case c.Rise < 1:
		return fieldErr("Rise", "%d must be at least 1", c.Rise)
	case c.Fall < 1:
		return fieldErr("Fall", "%d must be at least 1", c.Fall)
	case c.EjectConsecutiveErrors < 0:
		return fieldErr("EjectConsecutiveErrors", "%d is negative", c.EjectConsecutiveErrors)
	case c.EjectConsecutive5xx < 0:
		return fieldErr("EjectConsecutive5xx", "%d is negative", c.EjectConsecutive5xx)
	case c.EjectBaseTime <= 0:
		return fieldErr("EjectBaseTime", "%v must be positive", c.EjectBaseTime)
	case c.EjectMaxTime < c.EjectBaseTime:
		return fieldErr("EjectMaxTime", "%v is below EjectBaseTime %v", c.EjectMaxTime, c.EjectBaseTime)
	case c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100:
		return fieldErr("MaxEjectionPercent", "%d is outside 0..100", c.MaxEjectionPercent)
	case c.Retries < 0:
		return fieldErr("Retries", "%d is negative", c.Retries)
	case c.RetryBudgetRatio < 0 || c.RetryBudgetRatio > 1:
		return fieldErr("RetryBudgetRatio", "%v is outside 0..1", c.RetryBudgetRatio)
	case c.RetryMinPerSecond < 0:
		return fieldErr("RetryMinPerSecond", "%d is negative", c.RetryMinPerSecond)
	case c.DialTimeout <= 0:
		return fieldErr("DialTimeout", "%v must be positive", c.DialTimeout)
	case c.ResponseHeaderTimeout <= 0:
		return fieldErr("ResponseHeaderTimeout", "%v must be positive", c.ResponseHeaderTimeout)
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
	case c.DrainTimeout <= 0:
		return fieldErr("DrainTimeout", "%v must be positive", c.DrainTimeout)
	case c.EventLoops < 0 || c.EventLoops > 1024:
		return fieldErr("EventLoops", "%d: want 0..1024", c.EventLoops)
	case !c.TraceStart.Valid():
		return fieldErr("TraceStart", "%q: want %s", c.TraceStart, settings.Choices(tracectx.Starts...))
	case c.EventLoops > 0 && !eventLoopsSupported():
		return fieldErr("EventLoops", "%d: event loops need Linux; use 0", c.EventLoops)
	}
	for _, b := range c.Backends {
		if !strings.Contains(b, ":") {
			return fieldErr("Backends", "entry %q is not host:port", b)
		}
	}
	return nil
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("lb config", field, format, args...)
}

// Settings returns the balancer's settings, bound to c's fields, with c's
// current values as defaults. The listen port (--lb-port) is the node's.
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("lb")
	return []settings.Setting{
		s("sticky", "Sticky", "the stage-3 lever: keep each session on one app node (sessions in app memory); the lb routes by its affinity cookie, else by a hash of the session cookie", settings.Bool(&c.Sticky)).AsLever(),
		s("lb-backends", "Backends", "static backends host:port[,host:port...] instead of the app nodes from membership", settings.List(&c.Backends)).Formerly("backends"),
		s("lb-discovery-interval", "DiscoveryInterval", "how often the lb re-reads its backends from membership (duration)", settings.Duration(&c.DiscoveryInterval)),
		s("lb-policy", "Policy", "backend choice: round-robin, weighted (by each app's weight) or least-conn (fewest requests in flight)", &c.Policy),
		s("lb-sticky-cookie", "StickyCookie", "name of the app's session cookie, which --sticky routes by", settings.String(&c.StickyCookie)).Formerly("sticky-cookie"),
		s("lb-affinity-cookie", "AffinityCookie", "name of the cookie in which the lb remembers a session's app node (with --sticky)", settings.String(&c.AffinityCookie)),
		s("lb-health-path", "HealthPath", "path of the active health check, GET on each backend's admin port; empty: passive ejection only", settings.String(&c.HealthPath)).Formerly("health-path"),
		s("lb-health-interval", "HealthInterval", "time between two active checks of one backend (duration)", settings.Duration(&c.HealthInterval)).Formerly("health-interval"),
		s("lb-health-timeout", "HealthTimeout", "timeout of one active check (duration)", settings.Duration(&c.HealthTimeout)).Formerly("health-timeout"),
		s("lb-health-rise", "Rise", "consecutive passing checks that bring a backend back (count)", settings.Int(&c.Rise)).Formerly("health-rise"),
		s("lb-health-fall", "Fall", "consecutive failing checks that take a backend out (count)", settings.Int(&c.Fall)).Formerly("health-fall"),
		s("lb-eject-errors", "EjectConsecutiveErrors", "consecutive connection errors that eject a backend (count; 0: never)", settings.Int(&c.EjectConsecutiveErrors)),
		s("lb-eject-5xx", "EjectConsecutive5xx", "consecutive 5xx responses, a 503 with Retry-After excepted, that eject a backend (count; 0: never)", settings.Int(&c.EjectConsecutive5xx)),
		s("lb-eject-time", "EjectBaseTime", "how long a first ejection lasts, doubled on each repeat (duration)", settings.Duration(&c.EjectBaseTime)),
		s("lb-eject-max-time", "EjectMaxTime", "longest ejection (duration)", settings.Duration(&c.EjectMaxTime)),
		s("lb-eject-max-percent", "MaxEjectionPercent", "most backends ejected at once (percent, 0-100; one may always be)", settings.Int(&c.MaxEjectionPercent)),
		s("lb-retries", "Retries", "times a request may be sent again to another backend, when that is safe (count; 0: never)", settings.Int(&c.Retries)),
		s("lb-retry-budget", "RetryBudgetRatio", "retries allowed as a share of requests over 10s (0-1; 0.2 is 20%)", settings.Float64(&c.RetryBudgetRatio)),
		s("lb-retry-min-per-second", "RetryMinPerSecond", "retries per second allowed whatever the request rate (count)", settings.Int(&c.RetryMinPerSecond)),
		s("lb-retry-5xx", "RetryOnGatewayError", "also retry idempotent requests answered 502, 503 or 504 (true or false)", settings.Bool(&c.RetryOnGatewayError)),
		s("lb-dial-timeout", "DialTimeout", "timeout connecting to a backend (duration)", settings.Duration(&c.DialTimeout)),
		s("lb-response-timeout", "ResponseHeaderTimeout", "timeout for a backend's response headers, then 504 (duration)", settings.Duration(&c.ResponseHeaderTimeout)),
		s("lb-max-idle-conns", "MaxIdleConns", "idle keep-alive connections kept per backend (count)", settings.Int(&c.MaxIdleConns)),
		s("lb-read-header-timeout", "ReadHeaderTimeout", "timeout for a client's request headers, which cuts slow clients (duration)", settings.Duration(&c.ReadHeaderTimeout)),
		s("lb-read-timeout", "ReadTimeout", "timeout for a client's whole request, body included (duration; 0: none)", settings.Duration(&c.ReadTimeout)),
		s("lb-write-timeout", "WriteTimeout", "close a client connection that takes none of its response this long (duration; 0: never)", settings.Duration(&c.WriteTimeout)),
		s("lb-idle-timeout", "IdleTimeout", "close a client keep-alive connection idle this long (duration; 0: never)", settings.Duration(&c.IdleTimeout)),
		s("lb-max-conns", "MaxConns", "most client connections served at once; more wait in the listen queue (count)", settings.Int(&c.MaxConns)),
		s("lb-drain-timeout", "DrainTimeout", "how long shutdown waits for in-flight requests (duration)", settings.Duration(&c.DrainTimeout)),
		s("lb-event-loops", "EventLoops", "epoll event loops serving client connections (Linux); 0 gives each connection its own goroutine", settings.Int(&c.EventLoops)).ShowDefault("GOMAXPROCS on Linux, 0 elsewhere"),
		s("lb-trust-forwarded", "TrustForwarded", "keep the client's X-Forwarded-Proto, behind an edge that terminates TLS (true or false)", settings.Bool(&c.TrustForwarded)),
		s("lb-trace-start", "TraceStart", "for a request without a W3C traceparent: start a trace, sampled or unsampled, or off (send it on without one)", &c.TraceStart),
	}
}

func defaultEventLoops() int {
	if eventLoopsSupported() {
		return runtime.GOMAXPROCS(0)
	}
	return 0
}
