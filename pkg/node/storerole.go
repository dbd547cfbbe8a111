package node

import (
	"context"
	"fmt"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store"
)

// openStore builds and opens the store role of a primary or replica node.
//
// With --failover the store gets a lease in a JetStream key-value bucket of
// the embedded NATS servers (failover and fencing, docs/replication.md); the
// connection for it is closed after the store, whose lease loop uses it
// until the end. Without it a primary is primary for good and replicas
// follow the node membership names primary.
func (n *Node) openStore() error {
	sc := n.cfg.RoleConfig.Store
	sc.Addr = n.listenAddr(n.cfg.Ports.Store)
	sc.NodeName = n.cfg.Name
	sc.DataDir = n.cfg.DataDir
	sc.Logger = n.log.With("role", "store")
	sc.Metrics = n.reg
	sc.Role = store.RolePrimary
	if n.cfg.Has(RoleReplica) {
		sc.Role = store.RoleReplica
	}
	sc.Peers = n
	var conn *queue.Conn
	if sc.Failover && n.nats == nil {
		return fmt.Errorf("store: --failover needs the embedded NATS server (--nats auto or on) for the lease")
	}
	if sc.Failover {
		cc := queue.DefaultClientConfig()
		cc.Name = n.cfg.Name + "-store-lease"
		cc.Servers, cc.Password = n.natsClientURLs, n.natsPassword
		cc.Logger = n.log.With("role", "store")
		// A NATS server that freezes (SIGSTOP) keeps its TCP connections
		// open; the lease connection must notice within the lease, not
		// after two missed pings at the 5 s default.
		if p := sc.LeaseTTL / 3; p > 0 && p < cc.PingInterval {
			cc.PingInterval = p
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := queue.Connect(ctx, cc)
		cancel()
		if err != nil {
			return fmt.Errorf("store: connect to nats for the lease: %w", err)
		}
		conn = c
		sc.Lease = store.NewNATSLease(c.JetStream(), "default", n.nats.ClusterSize,
			func(ctx context.Context, stream string) error { return c.StepDown(ctx, stream, "") })
	}
	s, err := store.New(sc)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return fmt.Errorf("store: %w", err)
	}
	if err := n.openRole("store", storeRole{s, conn}); err != nil {
		if conn != nil {
			conn.Close()
		}
		return err
	}
	n.store = s
	return nil
}

// storeRole closes the lease's NATS connection after the store.
type storeRole struct {
	*store.Server
	conn *queue.Conn
}

func (r storeRole) Close() error {
	err := r.Server.Close()
	if r.conn != nil {
		r.conn.Close()
	}
	return err
}

// natsClientURLs lists this node's NATS server first, then the others'.
func (n *Node) natsClientURLs() []string {
	var urls []string
	if n.nats != nil {
		if u := n.nats.ClientURL(); u != "" {
			urls = append(urls, u)
		}
	}
	for _, m := range n.cluster.Members() {
		if m.Name == n.cfg.Name || m.Status != cluster.StatusAlive {
			continue
		}
		if a := m.RoleAddr("nats"); a != "" {
			urls = append(urls, "nats://"+a)
		}
	}
	return urls
}
