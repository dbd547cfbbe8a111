package natsserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/settings"
)

// ServerConfig configures an embedded NATS server with JetStream.
type ServerConfig struct {
	// Name is the NATS server name and the JetStream Raft peer name. It must
	// be stable across restarts (the node name), so that a restarted node
	// rejoins as the same peer with its data instead of as a stranger.
	// Required; no spaces.
	Name string

	// Host is the address both listeners bind to and that peers and clients
	// are told to use. Default "127.0.0.1". A wildcard address (0.0.0.0, ::)
	// works, but then nats-server tells peers every address of the machine,
	// loopback included; give the node's real address where peers must
	// reach it.
	Host string

	// ClientPort is the port for NATS clients. Default 4222 (the node's
	// --nats-port). 0 picks a free port (tests).
	ClientPort int

	// ClusterPort is the port for routes between servers. Default 6222 (the
	// node's --nats-cluster-port). 0 picks a free port before the server
	// starts, because the server must know its own cluster URL up front (see
	// Routes).
	ClusterPort int

	// ClusterName names the NATS cluster; every server of one scalestack
	// cluster must use the same. Default "scalestack".
	ClusterName string

	// DataDir is where JetStream keeps its streams (nats-server adds a
	// "jetstream" directory below it), e.g. <data>/nats. It must survive
	// restarts for the data, and the Raft membership, to survive. Required.
	DataDir string

	// Routes are the cluster URLs (nats-route://host:port) of peers known at
	// start. They are kept for the server's whole life, next to the peers
	// given to SetPeers. May be empty: the server then routes to its own
	// cluster URL, which nats-server ignores, because a clustered JetStream
	// refuses to start without any configured route; peers that route to
	// it later join.
	Routes []string

	// Standalone runs JetStream without a cluster: no cluster listener, no
	// routes, and JetStream works at once on this one server. Default false.
	// A clustered server needs a second server before JetStream works
	// (nats-server's Raft waits for a route and bootstraps its meta group
	// expecting at least two peers), but a standalone server can never join
	// a cluster later: restarting it clustered would delete its streams as
	// orphans. Use it where a node is known to be the only NATS server (the
	// single-store stages), and clustered mode wherever servers may join.
	Standalone bool

	// SyncAlways makes JetStream fsync every write before acknowledging it.
	// Default true. Off, nats-server syncs every SyncInterval (2 minutes by
	// default), and a process crash can lose messages the publisher saw
	// acknowledged. On costs publish latency (one fsync per write on the
	// stream leader and each replica).
	SyncAlways bool

	// MaxMemory caps memory-backed streams, in bytes. Default 128 MiB. 0 lets
	// nats-server take 75% of the machine's memory, too much for several
	// nodes on one laptop.
	MaxMemory int64

	// MaxStore caps file-backed streams, in bytes. Default 4 GiB. 0 lets
	// nats-server take most of the free disk.
	MaxStore int64

	// StartTimeout bounds how long Open waits for the server to accept
	// connections. Default 10s.
	StartTimeout time.Duration

	// Trace logs every NATS protocol message at debug level. Default false;
	// very verbose, for debugging the protocol only.
	Trace bool

	// Password, when not empty, is required of every client (as user
	// AuthUser) and of every route from another server, and this server
	// presents it on the routes it makes. Servers of one cluster must share
	// it. The node derives it from --cluster-key; empty (the default, and
	// the node's choice without a key) accepts anyone who can connect.
	Password string

	// TLS, when not nil, makes the client port speak TLS only, with it
	// (the node's certificate, cluster.TLS.Server); clients verify it
	// against their CA. The Password still authenticates them. Default nil:
	// plain TCP, password and messages readable on the wire.
	TLS *tls.Config

	// RouteTLS, when not nil, makes every route between servers TLS with
	// it, both ways: a server dials and accepts routes with the same
	// configuration, so it must hold the node's certificate, the CA as
	// RootCAs and ClientCAs, and require client certificates
	// (cluster.TLS.Mutual). Servers of one cluster all set it or none.
	// Default nil.
	RouteTLS *tls.Config

	// Logger receives the server's log lines: notices at info, debug and
	// trace lines at debug. nil discards them.
	Logger *slog.Logger
}

// DefaultServerConfig returns the configuration of a server on the
// documented default ports of 127.0.0.1. Name and DataDir must still be set.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Host:         "127.0.0.1",
		ClientPort:   4222,
		ClusterPort:  6222,
		ClusterName:  "scalestack",
		SyncAlways:   true,
		MaxMemory:    128 << 20,
		MaxStore:     4 << 30,
		StartTimeout: 10 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c *ServerConfig) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("queue: Name is required")
	case strings.ContainsAny(c.Name, " \t\r\n"):
		return fmt.Errorf("queue: Name %q must not contain spaces", c.Name)
	case c.Host == "":
		return errors.New("queue: Host is required")
	case c.ClientPort < 0 || c.ClientPort > 65535:
		return fmt.Errorf("queue: ClientPort %d out of range 0-65535", c.ClientPort)
	case c.ClusterPort < 0 || c.ClusterPort > 65535:
		return fmt.Errorf("queue: ClusterPort %d out of range 0-65535", c.ClusterPort)
	case !c.Standalone && c.ClientPort != 0 && c.ClientPort == c.ClusterPort:
		return fmt.Errorf("queue: ClientPort and ClusterPort are both %d", c.ClientPort)
	case c.Standalone && len(c.Routes) > 0:
		return errors.New("queue: Routes must be empty on a Standalone server")
	case c.ClusterName == "":
		return settings.Errorf("queue", "ClusterName", "is required")
	case strings.ContainsAny(c.ClusterName, " \t\r\n"):
		return settings.Errorf("queue", "ClusterName", "%q must not contain spaces", c.ClusterName)
	case c.DataDir == "":
		return errors.New("queue: DataDir is required")
	case c.MaxMemory < 0:
		return settings.Errorf("queue", "MaxMemory", "%d must not be negative", c.MaxMemory)
	case c.MaxStore < 0:
		return settings.Errorf("queue", "MaxStore", "%d must not be negative", c.MaxStore)
	case c.StartTimeout <= 0:
		return fmt.Errorf("queue: StartTimeout %v must be positive", c.StartTimeout)
	}
	for _, r := range c.Routes {
		if _, err := parseRoute(r); err != nil {
			return fmt.Errorf("queue: Routes: %w", err)
		}
	}
	return nil
}

// Settings returns the server's own settings, bound to c's fields. The
// node owns --nats, --nats-port, --nats-cluster-port, --name, --addr and
// --data and fills in Name, Host, the ports and DataDir itself.
func (c *ServerConfig) Settings() []settings.Setting {
	s := settings.Of("nats")
	return []settings.Setting{
		s("nats-cluster-name", "ClusterName", "name of the NATS cluster, the same on every NATS-hosting node (no spaces)", settings.String(&c.ClusterName)),
		s("nats-standalone", "Standalone", "run JetStream on this server alone, at once, never clustering with other NATS servers (true or false)", settings.Bool(&c.Standalone)),
		s("nats-sync-always", "SyncAlways", "fsync every JetStream write before acknowledging it; false can lose acknowledged messages on a crash (true or false)", settings.Bool(&c.SyncAlways)),
		s("nats-max-memory", "MaxMemory", "memory-backed JetStream streams this server may hold (bytes; suffixes KiB, MiB, GiB)", settings.Bytes(&c.MaxMemory)),
		s("nats-max-store", "MaxStore", "file-backed JetStream streams this server may hold (bytes; suffixes KiB, MiB, GiB)", settings.Bytes(&c.MaxStore)),
	}
}

// parseRoute checks a cluster URL. A bare host:port is accepted and given
// the nats-route scheme, since that is what membership naturally carries.
func parseRoute(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "nats-route://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", s, err)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("route %q: want nats-route://host:port", s)
	}
	return u, nil
}
