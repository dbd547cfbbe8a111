package node

import (
	"flag"
	"fmt"
	"net"
	"strconv"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store"
)

// RoleConfigs holds the configuration of every role package. The node fills
// in what it owns (addresses, names, data directory, logger, metrics,
// discovery) before it builds each role.
type RoleConfigs struct {
	// Cluster tunes gossip and failure detection (the --gossip-* flags).
	Cluster cluster.Config
	NATS    queue.ServerConfig
	Store   store.Config
}

func defaultRoleConfigs() RoleConfigs {
	return RoleConfigs{
		Cluster: cluster.DefaultConfig(),
		NATS:    queue.DefaultServerConfig(),
		Store:   store.DefaultConfig(),
	}
}

func (rc *RoleConfigs) addFlags(fs *flag.FlagSet) {
	rc.Cluster.AddFlags(fs)
	rc.NATS.AddFlags(fs)
	rc.Store.AddFlags(fs)
}

// validate checks the role configurations the node will use, after the node
// has filled in its own fields.
func (rc *RoleConfigs) validate(c *Config) error {
	if c.hasStore() {
		sc := rc.Store
		sc.Addr, sc.NodeName, sc.DataDir = "127.0.0.1:0", c.Name, c.DataDir
		if err := sc.Validate(); err != nil {
			return configErr("%v", err)
		}
	}
	return nil
}

func (n *Node) listenAddr(port int) string {
	return net.JoinHostPort(n.cfg.Addr, strconv.Itoa(port))
}

// openRoles builds and opens the roles in start order: the store first,
// since the app reads it, and the front-facing roles last, so that nothing
// is offered traffic before what it depends on is up.
func (n *Node) openRoles() error {
	if n.cfg.hasStore() {
		sc := n.cfg.RoleConfig.Store
		sc.Addr = n.listenAddr(n.cfg.Ports.Store)
		sc.NodeName = n.cfg.Name
		sc.DataDir = n.cfg.DataDir
		sc.Logger = n.log.With("role", "store")
		sc.Metrics = n.reg
		s, err := store.New(sc)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if err := n.openRole("store", s); err != nil {
			return err
		}
		n.store = s
	}
	return nil
}

// openRole opens r and records it for Close and /status.
func (n *Node) openRole(name string, r role) error {
	if err := r.Open(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	n.roles = append(n.roles, namedRole{name, r})
	n.log.Info("role started", "role", name)
	return nil
}
