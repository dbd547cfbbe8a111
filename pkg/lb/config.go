package lb

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Policies a Config may name.
const (
	// PolicyRoundRobin sends each request to the next healthy backend in turn.
	PolicyRoundRobin = "round-robin"
	// PolicyWeighted is nginx's smooth weighted round robin over Target.Weight.
	PolicyWeighted = "weighted"
	// PolicyLeastConn sends each request to the backend with the fewest
	// requests in flight, ties broken in turn.
	PolicyLeastConn = "least-conn"
)

// Config holds a load balancer's settings. The node fills in Addr and
// NodeName; everything else has a default from DefaultConfig and a flag from
// AddFlags. What is injected (discovery, logger, metrics) is in Deps.
type Config struct {
	// Addr is the listen address, host:port. Port 0 picks a free port (see
	// LB.Addr). Default "127.0.0.1:8080".
	Addr string

	// NodeName names this balancer in the X-LB and Via headers, in logs and in
	// metrics. Default "lb".
	NodeName string

	// Backends is a static list of backend addresses, host:port, used when
	// Deps.Discovery is nil (--backends). Each backend is named by its
	// address. Empty means the backends come from Deps.Discovery.
	Backends []string

	// DiscoveryInterval is how often Discovery is polled. A backend that
	// joins takes traffic after at most this long plus one health check.
	// Shorter costs a call to Backends() per tick. Default 200ms.
	DiscoveryInterval time.Duration

	// Policy chooses among healthy backends: PolicyRoundRobin (default),
	// PolicyWeighted or PolicyLeastConn.
	Policy string

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
	// back. A new backend needs one. Default 2.
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
	}
}

// Validate reports the first field that holds an unusable value.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("lb config: Addr is empty")
	case c.NodeName == "":
		return errors.New("lb config: NodeName is empty")
	case c.DiscoveryInterval <= 0:
		return fmt.Errorf("lb config: DiscoveryInterval %v must be positive", c.DiscoveryInterval)
	case c.Policy != PolicyRoundRobin && c.Policy != PolicyWeighted && c.Policy != PolicyLeastConn:
		return fmt.Errorf("lb config: Policy %q is not one of %s, %s, %s", c.Policy, PolicyRoundRobin, PolicyWeighted, PolicyLeastConn)
	case c.Sticky && c.StickyCookie == "":
		return errors.New("lb config: StickyCookie is empty while Sticky is set")
	case c.Sticky && c.AffinityCookie == "":
		return errors.New("lb config: AffinityCookie is empty while Sticky is set")
	case c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/"):
		return fmt.Errorf("lb config: HealthPath %q must start with /", c.HealthPath)
	case c.HealthPath != "" && c.HealthInterval <= 0:
		return fmt.Errorf("lb config: HealthInterval %v must be positive", c.HealthInterval)
	case c.HealthPath != "" && c.HealthTimeout <= 0:
		return fmt.Errorf("lb config: HealthTimeout %v must be positive", c.HealthTimeout)
	case c.Rise < 1:
		return fmt.Errorf("lb config: Rise %d must be at least 1", c.Rise)
	case c.Fall < 1:
		return fmt.Errorf("lb config: Fall %d must be at least 1", c.Fall)
	case c.EjectConsecutiveErrors < 0:
		return fmt.Errorf("lb config: EjectConsecutiveErrors %d is negative", c.EjectConsecutiveErrors)
	case c.EjectConsecutive5xx < 0:
		return fmt.Errorf("lb config: EjectConsecutive5xx %d is negative", c.EjectConsecutive5xx)
	case c.EjectBaseTime <= 0:
		return fmt.Errorf("lb config: EjectBaseTime %v must be positive", c.EjectBaseTime)
	case c.EjectMaxTime < c.EjectBaseTime:
		return fmt.Errorf("lb config: EjectMaxTime %v is below EjectBaseTime %v", c.EjectMaxTime, c.EjectBaseTime)
	case c.MaxEjectionPercent < 0 || c.MaxEjectionPercent > 100:
		return fmt.Errorf("lb config: MaxEjectionPercent %d is outside 0..100", c.MaxEjectionPercent)
	case c.Retries < 0:
		return fmt.Errorf("lb config: Retries %d is negative", c.Retries)
	case c.RetryBudgetRatio < 0 || c.RetryBudgetRatio > 1:
		return fmt.Errorf("lb config: RetryBudgetRatio %v is outside 0..1", c.RetryBudgetRatio)
	case c.RetryMinPerSecond < 0:
		return fmt.Errorf("lb config: RetryMinPerSecond %d is negative", c.RetryMinPerSecond)
	case c.DialTimeout <= 0:
		return fmt.Errorf("lb config: DialTimeout %v must be positive", c.DialTimeout)
	case c.ResponseHeaderTimeout <= 0:
		return fmt.Errorf("lb config: ResponseHeaderTimeout %v must be positive", c.ResponseHeaderTimeout)
	case c.MaxIdleConns < 1:
		return fmt.Errorf("lb config: MaxIdleConns %d must be at least 1", c.MaxIdleConns)
	case c.ReadHeaderTimeout <= 0:
		return fmt.Errorf("lb config: ReadHeaderTimeout %v must be positive", c.ReadHeaderTimeout)
	case c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0:
		return errors.New("lb config: ReadTimeout, WriteTimeout and IdleTimeout must not be negative")
	case c.MaxConns < 1:
		return fmt.Errorf("lb config: MaxConns %d must be at least 1", c.MaxConns)
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("lb config: MaxHeaderBytes %d is below 1024", c.MaxHeaderBytes)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("lb config: DrainTimeout %v must be positive", c.DrainTimeout)
	case c.EventLoops < 0 || c.EventLoops > 1024:
		return fmt.Errorf("lb config: EventLoops %d, want 0..1024", c.EventLoops)
	case c.EventLoops > 0 && !eventLoopsSupported():
		return fmt.Errorf("lb config: EventLoops %d, but event loops need Linux; use 0", c.EventLoops)
	}
	for _, b := range c.Backends {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("lb config: Backends entry %q is not host:port", b)
		}
	}
	return nil
}

// AddFlags registers the balancer's flags on fs, with c's current values as
// defaults. The listen port (--lb-port) is the node's.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.Var((*listFlag)(&c.Backends), "backends", "static backends, host:port,... (instead of membership)")
	fs.DurationVar(&c.DiscoveryInterval, "lb-discovery-interval", c.DiscoveryInterval, "how often the lb re-reads its backends from membership")
	fs.StringVar(&c.Policy, "lb-policy", c.Policy, "backend choice: round-robin, weighted or least-conn")
	fs.BoolVar(&c.Sticky, "sticky", c.Sticky, "keep each session on one app node (sessions in app memory)")
	fs.StringVar(&c.StickyCookie, "sticky-cookie", c.StickyCookie, "name of the app's session cookie")
	fs.StringVar(&c.AffinityCookie, "lb-affinity-cookie", c.AffinityCookie, "cookie in which the lb remembers a session's node")
	fs.StringVar(&c.HealthPath, "health-path", c.HealthPath, "path of the active health check (empty: passive checks only)")
	fs.DurationVar(&c.HealthInterval, "health-interval", c.HealthInterval, "time between two active checks of a backend")
	fs.DurationVar(&c.HealthTimeout, "health-timeout", c.HealthTimeout, "timeout of one active check")
	fs.IntVar(&c.Rise, "health-rise", c.Rise, "passing checks that bring a backend back")
	fs.IntVar(&c.Fall, "health-fall", c.Fall, "failing checks that take a backend out")
	fs.IntVar(&c.EjectConsecutiveErrors, "lb-eject-errors", c.EjectConsecutiveErrors, "consecutive connection errors that eject a backend (0: never)")
	fs.IntVar(&c.EjectConsecutive5xx, "lb-eject-5xx", c.EjectConsecutive5xx, "consecutive 5xx responses (a 503 with Retry-After excepted) that eject a backend (0: never)")
	fs.DurationVar(&c.EjectBaseTime, "lb-eject-time", c.EjectBaseTime, "first ejection time, doubled on each repeat")
	fs.DurationVar(&c.EjectMaxTime, "lb-eject-max-time", c.EjectMaxTime, "longest ejection")
	fs.IntVar(&c.MaxEjectionPercent, "lb-eject-max-percent", c.MaxEjectionPercent, "most backends ejected at once, in percent")
	fs.IntVar(&c.Retries, "lb-retries", c.Retries, "retries of a request on another backend, when safe")
	fs.Float64Var(&c.RetryBudgetRatio, "lb-retry-budget", c.RetryBudgetRatio, "retries allowed as a share of requests")
	fs.IntVar(&c.RetryMinPerSecond, "lb-retry-min-per-second", c.RetryMinPerSecond, "retries per second allowed whatever the request rate")
	fs.BoolVar(&c.RetryOnGatewayError, "lb-retry-5xx", c.RetryOnGatewayError, "retry idempotent requests answered 502/503/504")
	fs.DurationVar(&c.DialTimeout, "lb-dial-timeout", c.DialTimeout, "timeout connecting to a backend")
	fs.DurationVar(&c.ResponseHeaderTimeout, "lb-response-timeout", c.ResponseHeaderTimeout, "timeout for a backend's response headers (then 504)")
	fs.IntVar(&c.MaxIdleConns, "lb-max-idle-conns", c.MaxIdleConns, "idle keep-alive connections kept per backend")
	fs.DurationVar(&c.ReadHeaderTimeout, "lb-read-header-timeout", c.ReadHeaderTimeout, "timeout for a client's request headers")
	fs.DurationVar(&c.ReadTimeout, "lb-read-timeout", c.ReadTimeout, "timeout for a client's whole request (0: none)")
	fs.DurationVar(&c.WriteTimeout, "lb-write-timeout", c.WriteTimeout, "close a client connection that takes none of its response this long (0: never)")
	fs.DurationVar(&c.IdleTimeout, "lb-idle-timeout", c.IdleTimeout, "timeout of an idle client keep-alive connection")
	fs.IntVar(&c.MaxConns, "lb-max-conns", c.MaxConns, "most client connections at once; more wait in the listen queue")
	fs.DurationVar(&c.DrainTimeout, "lb-drain-timeout", c.DrainTimeout, "how long shutdown waits for in-flight requests")
	fs.IntVar(&c.EventLoops, "lb-event-loops", c.EventLoops, "epoll event loops serving client connections (Linux); 0 gives each connection its own goroutine")
	fs.BoolVar(&c.TrustForwarded, "lb-trust-forwarded", c.TrustForwarded, "keep the client's X-Forwarded-Proto (behind a TLS edge)")
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listFlag) Set(s string) error {
	*l = (*l)[:0]
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

func defaultEventLoops() int {
	if eventLoopsSupported() {
		return runtime.GOMAXPROCS(0)
	}
	return 0
}
