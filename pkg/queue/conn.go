package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClientConfig configures a connection to the NATS cluster.
type ClientConfig struct {
	// Servers returns the client URLs (nats://host:port, or host:port) of
	// the NATS servers the node currently knows from membership. It is
	// called while connecting and whenever every server the connection knows
	// has failed, so it must be fast and safe for concurrent use. Required.
	Servers func() []string

	// Name is the connection's name as the servers show it (the node name).
	Name string

	// Password is presented as user AuthUser, to servers that require one
	// (ServerConfig.Password). Empty presents none.
	Password string

	// TLS, when not nil, is the client side of TLS to servers that require
	// it (ServerConfig.TLS): each server is verified against its RootCAs
	// and the address dialled. Default nil: plain TCP.
	TLS *tls.Config

	// OnReconnect, if not nil, is called (on nats.go's callback goroutine)
	// after the connection was lost and is back, subscriptions restored.
	// Core NATS messages published meanwhile were not delivered: a
	// subscriber that must not miss any (the edge's purges) makes up for
	// them here.
	OnReconnect func()

	// RetryInterval is the wait between attempts of the first connect, in
	// particular while Servers returns nothing yet. Default 1s.
	RetryInterval time.Duration

	// ReconnectWait is the pause before trying a server again after it
	// failed. Default 500ms; nats.go's 2s makes a failover visibly slow.
	ReconnectWait time.Duration

	// DialTimeout bounds one TCP connect and handshake. Default 2s.
	DialTimeout time.Duration

	// PingInterval is how often the client checks that its server is alive;
	// two missed pings count as a dead server. Default 5s, so a server whose
	// machine vanishes (no TCP reset) is left within about 15s; nats.go's
	// default of 2 minutes would leave the node without a queue that long.
	PingInterval time.Duration

	// DrainTimeout bounds how long Close lets subscriptions finish the
	// messages they hold. Default 5s.
	DrainTimeout time.Duration

	// Logger receives connection events. nil discards them.
	Logger *slog.Logger
}

// DefaultClientConfig returns the defaults; Servers must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		RetryInterval: time.Second,
		ReconnectWait: 500 * time.Millisecond,
		DialTimeout:   2 * time.Second,
		PingInterval:  5 * time.Second,
		DrainTimeout:  5 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c *ClientConfig) Validate() error {
	switch {
	case c.Servers == nil:
		return errors.New("queue: ClientConfig.Servers is required")
	case c.RetryInterval <= 0:
		return fmt.Errorf("queue: RetryInterval %v must be positive", c.RetryInterval)
	case c.ReconnectWait <= 0:
		return fmt.Errorf("queue: ReconnectWait %v must be positive", c.ReconnectWait)
	case c.DialTimeout <= 0:
		return fmt.Errorf("queue: DialTimeout %v must be positive", c.DialTimeout)
	case c.PingInterval <= 0:
		return fmt.Errorf("queue: PingInterval %v must be positive", c.PingInterval)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("queue: DrainTimeout %v must be positive", c.DrainTimeout)
	}
	return nil
}

// Conn is a connection to the NATS cluster that reconnects forever and
// follows the cluster as servers come and go.
//
// nats.go learns every server of the cluster from the INFO its server sends,
// also servers that join later, and rotates through them on reconnect. What
// it cannot do (v1.55.0 has no call to add servers to a live connection) is
// find a server it was never told of, which happens when every server it
// knew has gone. For that case the Conn dials through a dialer that, when
// the address nats.go asks for does not answer, tries the servers
// ClientConfig.Servers returns that nats.go does not know yet.
type Conn struct {
	cfg    ClientConfig
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	dialer *dialer
	closed chan struct{} // closed by nats.go's ClosedHandler
}

// Connect connects to one of the servers cfg.Servers returns, trying again
// every RetryInterval, also while no server is known yet, until it succeeds
// or ctx ends. Once connected, the connection reconnects on its own forever.
func Connect(ctx context.Context, cfg ClientConfig) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := discardLogger(cfg.Logger)
	c := &Conn{
		cfg:    cfg,
		log:    log,
		closed: make(chan struct{}),
		dialer: &dialer{servers: cfg.Servers, timeout: cfg.DialTimeout, log: log},
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.Timeout(cfg.DialTimeout),
		nats.PingInterval(cfg.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DrainTimeout(cfg.DrainTimeout),
		nats.SetCustomDialer(c.dialer),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.dialer.setKnown(nc.Servers())
			log.Info("nats reconnected", "server", nc.ConnectedServerName(), "addr", nc.ConnectedAddr())
			if cfg.OnReconnect != nil {
				cfg.OnReconnect()
			}
		}),
		nats.DiscoveredServersHandler(func(nc *nats.Conn) {
			c.dialer.setKnown(nc.Servers())
			log.Info("nats servers discovered", "servers", nc.Servers())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats async error", "subject", subject, "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	}
	if cfg.Password != "" {
		opts = append(opts, nats.UserInfo(AuthUser, cfg.Password))
	}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS.Clone()))
	}

	wait := time.NewTimer(0)
	defer wait.Stop()
	var lastErr error
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("queue: connect: %w (last attempt: %v)", ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("queue: connect: %w", ctx.Err())
		case <-wait.C:
		}
		urls := cfg.Servers()
		if len(urls) == 0 {
			log.Info("nats connect: no server known yet, waiting", "attempt", attempt)
			wait.Reset(cfg.RetryInterval)
			continue
		}
		urls = clientURLs(urls)
		c.dialer.setKnown(urls)
		nc, err := nats.Connect(strings.Join(urls, ","), opts...)
		lastErr = err
		if errors.Is(err, nats.ErrAuthorization) {
			// Retried all the same: the server may be one that is being
			// restarted with the right key.
			log.Error("nats refused this node's credentials: its --cluster-key differs from the NATS servers'", "servers", urls, "attempt", attempt)
			wait.Reset(cfg.RetryInterval)
			continue
		}
		if err != nil {
			log.Warn("nats connect failed, retrying", "servers", urls, "attempt", attempt, "err", err)
			wait.Reset(cfg.RetryInterval)
			continue
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("queue: connect: jetstream: %w", err)
		}
		c.nc, c.js = nc, js
		c.dialer.setKnown(nc.Servers())
		log.Info("nats connected", "server", nc.ConnectedServerName(), "addr", nc.ConnectedAddr(), "servers", nc.Servers())
		return c, nil
	}
}

// NATS returns the underlying connection, for core NATS publish and
// subscribe (edge purges, for example).
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the JetStream context of the connection.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Ready reports whether the connection is connected right now.
func (c *Conn) Ready() bool { return c.nc.IsConnected() }

// WaitJetStream waits until JetStream answers, which needs a JetStream meta
// leader: about 4-5s after the first servers of a cluster start, and again
// for some seconds after a meta leader dies.
func (c *Conn) WaitJetStream(ctx context.Context) error {
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("queue: wait for jetstream: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Close drains the connection, letting subscriptions finish the messages
// they hold for up to DrainTimeout, and closes it.
func (c *Conn) Close() error {
	if c.nc.IsClosed() {
		return nil
	}
	if !c.nc.IsConnected() {
		// Nothing can be flushed to a server we are not connected to.
		c.nc.Close()
	} else if err := c.nc.Drain(); err != nil {
		c.nc.Close()
	}
	t := time.NewTimer(c.cfg.DrainTimeout + time.Second)
	defer t.Stop()
	select {
	case <-c.closed:
	case <-t.C:
		c.nc.Close()
	}
	return nil
}

// ConnStatus is the live state of a Conn, for the node's /status.
type ConnStatus struct {
	Connected bool `json:"connected"`
	// Server is the name of the server the connection is on.
	Server string `json:"server,omitempty"`
	// Addr is the address of that server.
	Addr string `json:"addr,omitempty"`
	// Servers are the URLs the connection knows and would reconnect to.
	Servers    []string `json:"servers"`
	Reconnects uint64   `json:"reconnects"`
	InMsgs     uint64   `json:"in_msgs"`
	OutMsgs    uint64   `json:"out_msgs"`
}

// Status returns a ConnStatus.
func (c *Conn) Status() any {
	st := c.nc.Stats()
	return ConnStatus{
		Connected:  c.nc.IsConnected(),
		Server:     c.nc.ConnectedServerName(),
		Addr:       c.nc.ConnectedAddr(),
		Servers:    c.nc.Servers(),
		Reconnects: st.Reconnects,
		InMsgs:     st.InMsgs,
		OutMsgs:    st.OutMsgs,
	}
}

// dialer dials the address nats.go asks for and, when that fails, the
// servers membership knows that nats.go does not (see Conn).
//
// nats.go calls Dial with its connection lock held, so the dialer must not
// call back into the connection; it keeps its own copy of the pool, fed
// from nats.go's callbacks.
type dialer struct {
	servers func() []string
	timeout time.Duration
	log     *slog.Logger

	mu    sync.Mutex
	known []string // host:port of every server in nats.go's pool
}

func (d *dialer) setKnown(urls []string) {
	hosts := make([]string, 0, len(urls))
	for _, u := range urls {
		if h := hostPort(u); h != "" {
			hosts = append(hosts, h)
		}
	}
	d.mu.Lock()
	d.known = hosts
	d.mu.Unlock()
}

// maxFallbacks bounds the unknown servers tried per failed dial, so that a
// membership list of dead machines does not stall a reconnect round.
const maxFallbacks = 3

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	conn, err := nd.Dial(network, address)
	if err == nil {
		return conn, nil
	}
	d.mu.Lock()
	known := d.known
	d.mu.Unlock()
	var fresh []string
	for _, u := range d.servers() {
		h := hostPort(u)
		if h != "" && h != address && !slices.Contains(known, h) && !slices.Contains(fresh, h) {
			fresh = append(fresh, h)
		}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	for i, h := range fresh {
		if i == maxFallbacks {
			break
		}
		if c, ferr := nd.Dial(network, h); ferr == nil {
			d.log.Info("nats server unreachable, dialled a server learned from membership",
				"unreachable", address, "server", h)
			return c, nil
		}
	}
	return nil, err
}

// hostPort returns the host:port of a nats URL or a bare host:port, or ""
// when it has none.
func hostPort(s string) string {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Port() == "" {
		return ""
	}
	return u.Host
}

// clientURLs gives bare host:port entries the nats scheme, which nats.go
// needs to tell them from a host name.
func clientURLs(urls []string) []string {
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		out = append(out, u)
	}
	return out
}

// AuthUser is the user name that goes with a server's Password, for
// clients and routes alike.
const AuthUser = "scalestack"

// discardLogger returns l, or a logger that drops everything when l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
