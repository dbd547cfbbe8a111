package cache

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/settings"
)

// Config holds a cache Server's settings. The node fills in Addr and
// NodeName; the rest come from settings (Settings). What is injected (logger,
// metrics) is in Deps. The password and TLS are settings: values the node
// derives from its own (--cluster-key, --tls-*), not components.
type Config struct {
	// Addr is the TCP address to listen on, host:port. Port 0 picks a free
	// port (see Server.Addr). Default "127.0.0.1:6379".
	Addr string

	// NodeName names this node in INFO and logs. Default "" (none).
	NodeName string

	// MaxBytes is the memory budget of the keys and values, in bytes,
	// counting each entry's key, value and fixed overhead (see
	// docs/cache.md). When a write would exceed it, least recently used keys
	// are evicted. It is split evenly between the Shards, so a shard may
	// evict while others have room. Default 64 MiB (--cache-max-bytes).
	MaxBytes int64

	// Shards is the number of independently locked LRUs the keys are
	// spread over, rounded up to a power of two. More shards mean less lock
	// contention and a less exact global LRU order. Default 16
	// (--cache-shards).
	Shards int

	// Password, if not empty, must be given with AUTH before any other
	// command. Until then a connection may send only small requests (4 KiB,
	// 16 arguments), so a client that does not know it cannot make the
	// server hold more than a connection's first buffer; hence a password
	// longer than MaxPasswordBytes is refused. Every other command is
	// answered "-NOAUTH Authentication required.", as Redis does. The node
	// derives it from --cluster-key (docs/security.md) unless
	// --cache-password gives one. Default "" (no authentication), which the
	// node allows on loopback only (--cache-password).
	Password string

	// AuthTimeout closes a connection that has not authenticated this long
	// after it was accepted, when Password is set, as nats-server's
	// auth_timeout does: a client that does not know the password cannot
	// hold one of the MaxClients slots for long. Clients authenticate in
	// their first round trip (redis-cli -a, go-redis); a person typing
	// AUTH by hand into redis-cli has this long to do it. Zero disables
	// it. Default 10s (--cache-auth-timeout).
	AuthTimeout time.Duration

	// AuthFailDelay is how long the reply to a wrong AUTH is held back;
	// the connection executes nothing else meanwhile (pipelined guesses
	// wait their turn), and the third wrong AUTH on a connection closes
	// it. Guessing then costs a second and a third of a connection per
	// try. A client with the right password never waits. Zero answers at
	// once (the connection is still closed after three). Default 1s
	// (--cache-auth-fail-delay).
	AuthFailDelay time.Duration

	// TLS, when not nil, makes the cache serve TLS with it (the node's
	// certificate: --tls-cert, --tls-key). TLS connections are served by a
	// goroutine each, never by the event loops, which move raw bytes, so
	// EventLoops is ignored and each request costs about a fifth more CPU
	// (docs/cache.md). Default nil: plain TCP, in which the password and the
	// values cross the network readable.
	TLS *tls.Config

	// MaxValueBytes is the largest key or value one request may carry, in
	// bytes; a larger bulk string is a protocol error. It must fit in one
	// shard's share of MaxBytes. Default 1 MiB (--cache-max-value-bytes).
	MaxValueBytes int

	// MaxArgs is the largest number of arguments of one request (command
	// name included), which bounds MGET, MSET and DEL. Default 65536
	// (--cache-max-args).
	MaxArgs int

	// MaxRequestBytes is the largest single request in bytes, which bounds
	// each connection's read buffer. Default 16 MiB
	// (--cache-max-request-bytes).
	MaxRequestBytes int

	// MaxClients is the most connections served at once; more are answered
	// with an error and closed, as Redis's maxclients. Each costs at least
	// its two 16 KiB buffers. Default 10000 (--cache-max-clients).
	MaxClients int

	// IdleTimeout closes a connection that sends nothing for this long.
	// Zero keeps idle connections open forever, as Redis does by default;
	// but then connections that a client forgot, or that a peer holds open
	// on purpose, keep their buffers and a MaxClients slot for good. Client
	// pools keep idle connections and redial when one was closed (go-redis
	// checks a pooled connection before reusing it), so a few minutes
	// costs them a dial now and then. Default 5m (--cache-idle-timeout).
	IdleTimeout time.Duration

	// EventLoops is how many epoll event loops serve the connections, each
	// on its own goroutine, connections dealt out in turn (Linux only).
	// Zero gives every connection its own goroutine over Go's netpoller
	// instead: portable, but each request then also pays a goroutine park
	// and wake-up and an extra read(2), about a fifth more CPU per request
	// (docs/cache.md). One loop costs what Redis's single thread costs per
	// request; more loops use more cores for heavy pipelined traffic, at
	// more CPU per request. Default 1 on Linux, 0 elsewhere
	// (--cache-event-loops).
	EventLoops int

	// BusyPoll is how long an event loop keeps polling (without sleeping)
	// after the last event before it blocks in epoll_wait, as Linux's
	// SO_BUSY_POLL does for a socket. Clients that send again within it
	// find the loop awake, so their writes skip waking a sleeping thread:
	// about a tenth less CPU per request for a busy client on the same
	// machine (bench/README.md). It costs up to BusyPoll of CPU after each
	// burst of traffic and nothing when the cache is idle; zero turns it
	// off. Default 50µs (--cache-busy-poll).
	BusyPoll time.Duration

	// ExpireInterval is how often keys with a deadline are sampled and the
	// expired ones removed, Redis's active expire cycle (hz 10). Shorter
	// reclaims memory of unread expired keys sooner at more CPU. Default
	// 100ms (--cache-expire-interval).
	ExpireInterval time.Duration
}

// Deps are what a cache Server is given rather than told: New takes them
// beside the Config, and Config.Validate does not look at them.
type Deps struct {
	// Logger receives the server's structured logs. Nil discards them.
	Logger *slog.Logger

	// Metrics, if not nil, is where the server registers its Prometheus
	// collectors. Nil registers nothing.
	Metrics prometheus.Registerer
}

// What a connection may send before it has authenticated (when the server
// has a password): AUTH, HELLO, PING and QUIT need no more.
const (
	// MaxPasswordBytes is the longest Config.Password.
	MaxPasswordBytes = 1 << 10
	// preAuthMaxRequest is the largest request before AUTH, in bytes; it is
	// below the connection's first read buffer, which therefore never grows
	// for a client that has not authenticated.
	preAuthMaxRequest = 4 << 10
	// preAuthMaxArgs is the most arguments of a request before AUTH
	// (HELLO 3 AUTH user pass SETNAME name has 7).
	preAuthMaxArgs = 16
	// maxAuthFailures wrong AUTHs close a connection.
	maxAuthFailures = 3
)

// DefaultConfig returns the defaults documented on Config's fields.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:6379",
		MaxBytes:        64 << 20,
		Shards:          16,
		MaxValueBytes:   1 << 20,
		MaxArgs:         1 << 16,
		MaxRequestBytes: 16 << 20,
		MaxClients:      10000,
		IdleTimeout:     5 * time.Minute,
		AuthTimeout:     10 * time.Second,
		AuthFailDelay:   time.Second,
		EventLoops:      defaultEventLoops(),
		BusyPoll:        50 * time.Microsecond,
		ExpireInterval:  100 * time.Millisecond,
	}
}

// Validate reports the first field that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return fieldErr("Addr", "is empty")
	case c.MaxBytes <= 0:
		return fieldErr("MaxBytes", "%d: want > 0", c.MaxBytes)
	case c.Shards < 1 || c.Shards > 1<<16:
		return fieldErr("Shards", "%d: want 1..65536", c.Shards)
	case c.MaxValueBytes < 1:
		return fieldErr("MaxValueBytes", "%d: want > 0", c.MaxValueBytes)
	case int64(c.MaxValueBytes) > c.MaxBytes/int64(roundPow2(c.Shards)):
		return fieldErr("MaxValueBytes", "%d does not fit one shard's share of MaxBytes (%d / %d shards); lower MaxValueBytes or Shards, or raise MaxBytes",
			c.MaxValueBytes, c.MaxBytes, roundPow2(c.Shards))
	case c.MaxArgs < 3:
		return fieldErr("MaxArgs", "%d: want >= 3", c.MaxArgs)
	case c.MaxRequestBytes < c.MaxValueBytes:
		return fieldErr("MaxRequestBytes", "%d: want >= MaxValueBytes (%d)", c.MaxRequestBytes, c.MaxValueBytes)
	case c.MaxClients < 1:
		return fieldErr("MaxClients", "%d: want > 0", c.MaxClients)
	case c.IdleTimeout < 0:
		return fieldErr("IdleTimeout", "%v: want >= 0", c.IdleTimeout)
	case len(c.Password) > MaxPasswordBytes:
		return fieldErr("Password", "is %d bytes, want at most %d (it must fit the small requests allowed before AUTH)", len(c.Password), MaxPasswordBytes)
	case c.AuthTimeout < 0:
		return fieldErr("AuthTimeout", "%v: want >= 0", c.AuthTimeout)
	case c.AuthFailDelay < 0 || c.AuthFailDelay > time.Minute:
		return fieldErr("AuthFailDelay", "%v: want 0..1m", c.AuthFailDelay)
	case c.EventLoops < 0 || c.EventLoops > 1024:
		return fieldErr("EventLoops", "%d: want 0..1024", c.EventLoops)
	case c.EventLoops > 0 && !eventLoopsSupported():
		return fieldErr("EventLoops", "%d: but event loops need Linux; use 0", c.EventLoops)
	case c.BusyPoll < 0 || c.BusyPoll > 10*time.Millisecond:
		return fieldErr("BusyPoll", "%v: want 0..10ms", c.BusyPoll)
	case c.ExpireInterval <= 0:
		return fieldErr("ExpireInterval", "%v: want > 0", c.ExpireInterval)
	}
	return nil
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("cache config", field, format, args...)
}

// Settings returns the cache role's settings, bound to c's fields, with
// c's values as the defaults. The node owns --cache-port and the address.
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("cache")
	return []settings.Setting{
		s("cache-max-bytes", "MaxBytes", "memory budget for keys and values (bytes; suffixes KiB, MiB, GiB); least recently used keys are evicted beyond it", settings.Bytes(&c.MaxBytes)),
		s("cache-shards", "Shards", "independently locked LRU shards the keys are spread over (count, 1-65536, rounded up to a power of two)", settings.Int(&c.Shards)),
		s("cache-password", "Password", "password clients must give with AUTH; empty: derived from the cluster key, none without one", settings.String(&c.Password)),
		s("cache-max-value-bytes", "MaxValueBytes", "largest key or value in one request (bytes; suffixes KiB, MiB)", settings.IntBytes(&c.MaxValueBytes)),
		s("cache-max-args", "MaxArgs", "most arguments in one request, which bounds MGET, MSET and DEL (count)", settings.Int(&c.MaxArgs)),
		s("cache-max-request-bytes", "MaxRequestBytes", "largest single request, which bounds each connection's buffer (bytes; suffixes KiB, MiB)", settings.IntBytes(&c.MaxRequestBytes)),
		s("cache-max-clients", "MaxClients", "most client connections at once; more are answered with an error (count)", settings.Int(&c.MaxClients)),
		s("cache-idle-timeout", "IdleTimeout", "close connections idle this long (duration; 0: never)", settings.Duration(&c.IdleTimeout)),
		s("cache-auth-timeout", "AuthTimeout", "with a password, close connections not authenticated this long after connecting (duration; 0: never)", settings.Duration(&c.AuthTimeout)),
		s("cache-auth-fail-delay", "AuthFailDelay", "how long the reply to a wrong AUTH is held back; the third closes the connection (duration, 0-1m)", settings.Duration(&c.AuthFailDelay)),
		s("cache-event-loops", "EventLoops", "epoll event loops serving connections (Linux; count, 0-1024); 0 gives each connection its own goroutine", settings.Int(&c.EventLoops)).ShowDefault("1 on Linux, 0 elsewhere"),
		s("cache-busy-poll", "BusyPoll", "how long an event loop polls for more requests before it sleeps (duration, 0-10ms; 0: sleep at once)", settings.Duration(&c.BusyPoll)),
		s("cache-expire-interval", "ExpireInterval", "how often keys with a deadline are sampled and the expired ones removed (duration)", settings.Duration(&c.ExpireInterval)),
	}
}

func defaultEventLoops() int {
	if eventLoopsSupported() {
		return 1
	}
	return 0
}

func roundPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
