package node

import (
	"fmt"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// openStore builds and opens the store role of a primary or replica node.
//
// With --store-failover the store nodes of the group elect the primary among
// themselves by a majority lease over their store ports (docs/replication.md):
// the store needs from the node only who its peers are. Without it a
// primary is primary for good and replicas follow the node membership
// names primary.
func (n *Node) openStore() error {
	sc := n.cfg.RoleConfig.Store
	sc.Addr = n.listenAddr(n.cfg.Ports.Store)
	sc.NodeName = n.cfg.Name
	sc.DataDir = n.cfg.DataDir
	sc.Role = server.RolePrimary
	if n.cfg.Has(RoleReplica) {
		sc.Role = server.RoleReplica
	}
	deps := server.Deps{Peers: n, Members: storeMembers{n}, Logger: n.log.With("role", "store"), Metrics: n.reg}
	sc.Token = n.secrets.Store
	if n.tls != nil {
		sc.TLS, sc.PeerTLS = n.tls.Server, n.tls.Client
	}
	s, err := server.New(sc, deps)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := n.openRole("store", s); err != nil {
		return err
	}
	n.store = s
	return nil
}

// storeMembers lists every alive store node of every group (the store
// keeps its own group's), starting and draining ones too: the primary's
// lease renewals must reach a replica that is still starting, since it
// waits to learn the primary before it says it is ready.
type storeMembers struct{ n *Node }

func (m storeMembers) StoreNodes() []store.NodeInfo {
	if l := m.n.stores.Load(); l != nil {
		return l.all
	}
	return storeListsOf(m.n.cluster.Members()).all
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
