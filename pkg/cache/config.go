package cache

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config holds a cache Server's settings. The node fills in Addr and
// NodeName; the rest come from flags (AddFlags). What is injected (logger,
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
		return errors.New("cache config: Addr is empty")
	case c.MaxBytes <= 0:
		return fmt.Errorf("cache config: MaxBytes = %d, want > 0", c.MaxBytes)
	case c.Shards < 1 || c.Shards > 1<<16:
		return fmt.Errorf("cache config: Shards = %d, want 1..65536", c.Shards)
	case c.MaxValueBytes < 1:
		return fmt.Errorf("cache config: MaxValueBytes = %d, want > 0", c.MaxValueBytes)
	case int64(c.MaxValueBytes) > c.MaxBytes/int64(roundPow2(c.Shards)):
		return fmt.Errorf("cache config: MaxValueBytes = %d does not fit one shard's share of MaxBytes (%d / %d shards); lower MaxValueBytes or Shards, or raise MaxBytes",
			c.MaxValueBytes, c.MaxBytes, roundPow2(c.Shards))
	case c.MaxArgs < 3:
		return fmt.Errorf("cache config: MaxArgs = %d, want >= 3", c.MaxArgs)
	case c.MaxRequestBytes < c.MaxValueBytes:
		return fmt.Errorf("cache config: MaxRequestBytes = %d, want >= MaxValueBytes (%d)", c.MaxRequestBytes, c.MaxValueBytes)
	case c.MaxClients < 1:
		return fmt.Errorf("cache config: MaxClients = %d, want > 0", c.MaxClients)
	case c.IdleTimeout < 0:
		return fmt.Errorf("cache config: IdleTimeout = %v, want >= 0", c.IdleTimeout)
	case len(c.Password) > MaxPasswordBytes:
		return fmt.Errorf("cache config: Password is %d bytes, want at most %d (it must fit the small requests allowed before AUTH)", len(c.Password), MaxPasswordBytes)
	case c.AuthTimeout < 0:
		return fmt.Errorf("cache config: AuthTimeout = %v, want >= 0", c.AuthTimeout)
	case c.AuthFailDelay < 0 || c.AuthFailDelay > time.Minute:
		return fmt.Errorf("cache config: AuthFailDelay = %v, want 0..1m", c.AuthFailDelay)
	case c.EventLoops < 0 || c.EventLoops > 1024:
		return fmt.Errorf("cache config: EventLoops = %d, want 0..1024", c.EventLoops)
	case c.EventLoops > 0 && !eventLoopsSupported():
		return fmt.Errorf("cache config: EventLoops = %d, but event loops need Linux; use 0", c.EventLoops)
	case c.BusyPoll < 0 || c.BusyPoll > 10*time.Millisecond:
		return fmt.Errorf("cache config: BusyPoll = %v, want 0..10ms", c.BusyPoll)
	case c.ExpireInterval <= 0:
		return fmt.Errorf("cache config: ExpireInterval = %v, want > 0", c.ExpireInterval)
	}
	return nil
}

// AddFlags registers the cache role's flags on fs, with c's values as the
// defaults. The node registers --cache-port and the listen address.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.Var((*byteSize)(&c.MaxBytes), "cache-max-bytes", "cache: memory budget for keys and values, in bytes (suffixes KiB, MiB, GiB); least recently used keys are evicted beyond it")
	fs.IntVar(&c.Shards, "cache-shards", c.Shards, "cache: number of independently locked LRU shards (rounded up to a power of two)")
	fs.StringVar(&c.Password, "cache-password", c.Password, "cache: password clients must give with AUTH (empty: derived from --cluster-key, none without a key)")
	fs.Var(intByteSize{&c.MaxValueBytes}, "cache-max-value-bytes", "cache: largest key or value in one request, in bytes (suffixes KiB, MiB)")
	fs.IntVar(&c.MaxArgs, "cache-max-args", c.MaxArgs, "cache: most arguments in one request (bounds MGET, MSET, DEL)")
	fs.Var(intByteSize{&c.MaxRequestBytes}, "cache-max-request-bytes", "cache: largest single request in bytes, bounding each connection's buffer (suffixes KiB, MiB)")
	fs.IntVar(&c.MaxClients, "cache-max-clients", c.MaxClients, "cache: most client connections at once")
	fs.DurationVar(&c.IdleTimeout, "cache-idle-timeout", c.IdleTimeout, "cache: close connections idle this long (0: never)")
	fs.DurationVar(&c.AuthTimeout, "cache-auth-timeout", c.AuthTimeout, "cache: with a password, close connections that have not authenticated this long after connecting (0: never)")
	fs.DurationVar(&c.AuthFailDelay, "cache-auth-fail-delay", c.AuthFailDelay, "cache: how long the reply to a wrong AUTH is held back (the third closes the connection)")
	fs.IntVar(&c.EventLoops, "cache-event-loops", c.EventLoops, "cache: epoll event loops serving connections (Linux); 0 gives each connection its own goroutine")
	fs.DurationVar(&c.BusyPoll, "cache-busy-poll", c.BusyPoll, "cache: how long an event loop polls for more requests before it sleeps (0: sleep at once)")
	fs.DurationVar(&c.ExpireInterval, "cache-expire-interval", c.ExpireInterval, "cache: how often expired keys are sampled and removed")
}

// byteSize is a flag holding a byte count, written plainly or with a binary
// suffix: 65536, 64KiB, 64MiB, 1GiB (K, M, G and KB, MB, GB mean the same).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

type intByteSize struct{ p *int }

func (b intByteSize) String() string {
	if b.p == nil {
		return "0"
	}
	return strconv.Itoa(*b.p)
}

func (b intByteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	if n > int64(^uint32(0)>>1) {
		return fmt.Errorf("size %q too large", s)
	}
	*b.p = int(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: want bytes, optionally with KiB, MiB or GiB", s)
	}
	return n * mult, nil
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
