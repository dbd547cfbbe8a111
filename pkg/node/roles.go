package node

import (
	"fmt"
	"net"
	"strconv"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/cache"
	"github.com/scalestack/scalestack/pkg/cdn"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/lb"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
	"github.com/scalestack/scalestack/pkg/store/server"
	"github.com/scalestack/scalestack/pkg/worker"
)

// RoleConfigs holds the settings of every role package. The node fills in
// what it owns (addresses, names, data directory, derived credentials)
// before it builds each role, and gives each its dependencies (store client,
// membership views, NATS, logger, metrics) apart, in the role's Deps.
type RoleConfigs struct {
	// Cluster tunes gossip and failure detection (the --gossip-* flags).
	Cluster cluster.Config
	NATS    natsserver.ServerConfig
	Store   server.Config
	App     app.Config
	LB      lb.Config
	Cache   cache.Config
	Edge    cdn.Config
	Worker  worker.Config
}

func defaultRoleConfigs() RoleConfigs {
	return RoleConfigs{
		Cluster: cluster.DefaultConfig(),
		NATS:    natsserver.DefaultServerConfig(),
		Store:   server.DefaultConfig(),
		App:     app.DefaultConfig(),
		LB:      lb.DefaultConfig(),
		Cache:   cache.DefaultConfig(),
		Edge:    cdn.DefaultConfig(),
		Worker:  worker.DefaultConfig(),
	}
}

// validate checks the role configurations the node will use, after the node
// has filled in its own fields.
func (rc *RoleConfigs) validate(c *Config) error {
	// The gossip and NATS settings, with what the node fills in, so that a
	// bad value is reported now, naming its flag, rather than at Open.
	gc := rc.Cluster
	gc.Name, gc.BindAddr = c.Name, "127.0.0.1"
	if err := gc.Validate(); err != nil {
		return c.roleErr("gossip", err)
	}
	if c.runsNATS() {
		qc := rc.NATS
		qc.Name, qc.DataDir = c.Name, c.DataDir
		if err := qc.Validate(); err != nil {
			return c.roleErr("nats", err)
		}
	}
	if c.hasStore() {
		sc := rc.Store
		sc.Addr, sc.NodeName, sc.DataDir = "127.0.0.1:0", c.Name, c.DataDir
		if err := sc.Validate(); err != nil {
			return c.roleErr("store", err)
		}
	}
	if c.Has(RoleWorker) {
		if err := rc.validateWorker(c, rc.Worker); err != nil {
			return err
		}
	}
	if c.Has(RoleApp) {
		ac := rc.App
		ac.Addr, ac.NodeName, ac.DataDir = "127.0.0.1:0", c.Name, c.DataDir
		if err := ac.Validate(); err != nil {
			return c.roleErr(RoleApp, err)
		}
	}
	if c.Has(RoleLB) {
		lc := rc.LB
		lc.Addr, lc.NodeName = "127.0.0.1:0", c.Name
		if err := lc.Validate(); err != nil {
			return c.roleErr(RoleLB, err)
		}
	}
	if c.Has(RoleEdge) {
		ec := rc.Edge
		ec.Addr, ec.NodeName = "127.0.0.1:0", c.Name
		if err := ec.Validate(); err != nil {
			return c.roleErr(RoleEdge, err)
		}
	}
	if c.Has(RoleCache) {
		cc := rc.Cache
		cc.Addr, cc.NodeName = "127.0.0.1:0", c.Name
		if err := cc.Validate(); err != nil {
			return c.roleErr(RoleCache, err)
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
		if err := n.openStore(); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleCache) {
		cc := n.cfg.RoleConfig.Cache
		cc.Addr = n.listenAddr(n.cfg.Ports.Cache)
		cc.NodeName = n.cfg.Name
		cc.Password = n.cachePassword()
		cc.TLS = n.serverTLS()
		s, err := cache.New(cc, cache.Deps{Logger: n.log.With("role", "cache"), Metrics: n.reg})
		if err != nil {
			return fmt.Errorf("cache: %w", err)
		}
		if err := n.openRole("cache", s); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleWorker) || n.cfg.Has(RoleService) || n.cfg.Has(RoleApp) {
		// The rpc clients of the services, before the roles that call
		// through them, so that they close after them.
		if err := n.openRole("services", servicesRole{n}); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleWorker) {
		if err := n.openWorker(n.cfg.RoleConfig.Worker); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleService) {
		if err := n.openService(); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleApp) {
		ac := n.appConfig()
		ac.Addr = n.listenAddr(n.cfg.Ports.App)
		deps := app.Deps{CacheNodes: n.cacheNodes, Logger: n.log.With("role", "app"), Metrics: n.reg}
		if n.appRemote() {
			// The gateway: no store of its own, the service nodes' clients.
			s := n.remoteServices()
			deps.Services, deps.SessionStore = &s, n.remoteSessions()
			deps.ServiceClients = n.clients.status
		} else {
			if n.client == nil {
				n.client = n.newStoreClient()
			}
			deps.Store = n.client
		}
		if err := n.appPublishers(ac, &deps); err != nil {
			return err
		}
		a, err := app.New(ac, deps)
		if err != nil {
			return fmt.Errorf("app: %w", err)
		}
		if err := n.openRole("app", a); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleLB) {
		lc := n.cfg.RoleConfig.LB
		lc.Addr = n.listenAddr(n.cfg.Ports.LB)
		lc.NodeName = n.cfg.Name
		deps := lb.Deps{Logger: n.log.With("role", "lb"), Metrics: n.reg}
		if len(lc.Backends) == 0 {
			deps.Discovery = lbDiscovery{n}
		}
		l, err := lb.New(lc, deps)
		if err != nil {
			return fmt.Errorf("lb: %w", err)
		}
		if err := n.openRole("lb", l); err != nil {
			return err
		}
	}
	if n.cfg.Has(RoleEdge) {
		if err := n.openEdge(); err != nil {
			return err
		}
	}
	return nil
}

// lbDiscovery gives the load balancer the app nodes from membership: alive
// members with the app role that have announced their address; a draining
// node is passed on as draining so it gets no new requests.
type lbDiscovery struct{ n *Node }

func (d lbDiscovery) Backends() []lb.Target {
	if d.n == nil || d.n.cluster == nil {
		return nil
	}
	var out []lb.Target
	for _, m := range d.n.cluster.Alive(RoleApp) {
		if m.State == cluster.StateStarting {
			continue
		}
		if a := m.RoleAddr("app"); a != "" {
			// Health checks go to the node's admin /readyz, which turns
			// false as soon as the node starts draining or a role is not ready.
			out = append(out, lb.Target{Name: m.Name, Addr: a, HealthAddr: m.RoleAddr("admin"), Draining: m.State == cluster.StateDraining})
		}
	}
	return out
}

// appConfig returns the app's settings with what the node owns filled in:
// its name and data directory, and the cache tier's credentials derived
// from the cluster key. The worker runs the blog's service stack with the
// same settings (app.Config.ServicesConfig).
func (n *Node) appConfig() app.Config {
	ac := n.cfg.RoleConfig.App
	ac.NodeName = n.cfg.Name
	ac.DataDir = n.cfg.DataDir
	if ac.CacheTier.Password == "" {
		ac.CacheTier.Password = n.cachePassword()
	}
	ac.CacheTier.TLS = n.clientTLS()
	if len(ac.CacheMACKey) == 0 {
		ac.CacheMACKey = n.cacheMACKey()
	}
	return ac
}

// cacheMACKey is the key that seals what the app and the workers put in the
// cache tier (app.Config.CacheMACKey), derived from the cluster key so that
// every node of the cluster has the same one; nil without a cluster key
// (the tier then uses its public development key, and the node runs on
// loopback only).
func (n *Node) cacheMACKey() []byte {
	key, _ := cluster.ParseKey(n.cfg.ClusterKey) // checked when the node joined
	if s := cluster.DeriveSecret(key, "cache-mac"); s != "" {
		return []byte(s)
	}
	return nil
}

// cacheNodes returns the cache port of every alive cache node, for the
// app's cache tier and shared sessions. Starting and draining nodes are
// included: every write's invalidation must reach each node another app
// may read from, and this app may hear that a cache node is up later than
// another app does (gossip). A starting node that does not answer yet is
// held out of the ring by the tier until it has had the invalidations it
// missed.
func (n *Node) cacheNodes() []string {
	var out []string
	for _, m := range n.cluster.Alive(RoleCache) {
		if a := m.RoleAddr("cache"); a != "" {
			out = append(out, a)
		}
	}
	return out
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
