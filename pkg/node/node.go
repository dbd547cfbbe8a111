// Package node composes a scalestack node from its roles: it joins the
// cluster, starts the embedded NATS server and each role in order, serves the
// admin endpoints, and shuts everything down in the reverse order on Close.
//
// cmd/node only parses flags into a Config and calls New, Open and Close;
// internal/testcluster does the same inside a test.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// role is what the node needs of every role it runs.
type role interface {
	Open() error
	Close() error
	Ready() bool
	Status() any
}

// namedRole is an opened role, kept in start order so Close can walk back.
type namedRole struct {
	name string
	r    role
}

// Node is one running scalestack node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	started time.Time

	cluster *cluster.Cluster
	nats    *natsserver.Server
	// secrets are the credentials of the internal doors (store token,
	// cache and NATS passwords, purge and admin tokens), derived from
	// --cluster-key; all empty without one. secrets.Admin (label "admin")
	// is for the admin endpoints.
	secrets cluster.Secrets
	// tls is the node's TLS for internal traffic (--tls-*), nil without.
	tls    *cluster.TLS
	store  *server.Server
	client *store.Client // the store client of the app role
	roles  []namedRole   // opened serving roles, in start order
	admin  *adminServer
	// services lists the stage-10 service instances from membership, and
	// clients are the node's rpc clients over them (instances.go).
	services serviceDirectory
	stores   atomic.Pointer[storeLists] // store nodes of membership (watchMembership)
	clients  serviceClients

	ready  atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// New validates cfg and returns a node ready to Open.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, err := cluster.ParseKey(cfg.ClusterKey)
	if err != nil {
		return nil, configErr("--cluster-key: %v (make one with `./node keygen`)", err)
	}
	tlsCfg, err := cluster.LoadTLS(cfg.TLS)
	if err != nil {
		return nil, configErr("%v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Node{cfg: cfg, log: log, reg: reg, secrets: cluster.DeriveSecrets(key), tls: tlsCfg}, nil
}

// Config returns the node's configuration after defaults were filled in.
func (n *Node) Config() Config { return n.cfg }

// Open starts the node. The order matters:
//
//  1. check the data directory and every port, so that a mistake is reported
//     before anything has started;
//  2. join the cluster (state "starting"), so that the NATS server and the
//     roles can find their peers;
//  3. start the embedded NATS server with routes to the NATS nodes it sees;
//  4. start the roles: store first (others depend on it), then cache, app,
//     lb, edge;
//  5. serve the admin endpoints and announce state "up" with the real
//     addresses of every role.
//
// If any step fails, what was started is closed again and the error says
// which step failed: nothing is left half-started.
func (n *Node) Open() error {
	n.started = time.Now()
	if err := checkDataDir(n.cfg.DataDir); err != nil {
		return err
	}
	if err := checkPorts(&n.cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if err := n.open(ctx); err != nil {
		n.abort()
		return err
	}
	n.ready.Store(true)
	n.log.Info("node ready", "roles", n.cfg.RoleNames, "admin", n.AdminAddr(), "data", n.cfg.DataDir)
	return nil
}

func (n *Node) open(ctx context.Context) error {
	if err := n.openCluster(); err != nil {
		return fmt.Errorf("join cluster: %w", err)
	}
	if n.cfg.runsNATS() {
		if err := n.openNATS(ctx); err != nil {
			return fmt.Errorf("start nats: %w", err)
		}
	}
	n.watchMembership(ctx)
	if err := n.openRoles(); err != nil {
		return err
	}
	admin, err := n.openAdmin()
	if err != nil {
		return fmt.Errorf("start admin: %w", err)
	}
	n.admin = admin
	return n.cluster.SetMeta(ctx, func(m *cluster.Meta) {
		m.Addrs = n.addrs()
		m.State = cluster.StateUp
	})
}

// openCluster joins membership with the configured addresses; they are
// replaced by the bound ones once every role listens.
func (n *Node) openCluster() error {
	key, err := cluster.ParseKey(n.cfg.ClusterKey)
	if err != nil {
		return configErr("--cluster-key: %v (make one with `./node keygen`)", err)
	}
	cc := n.cfg.RoleConfig.Cluster
	cc.Name = n.cfg.Name
	cc.BindAddr = n.cfg.Addr
	cc.BindPort = n.cfg.Ports.Gossip
	cc.Seeds = n.cfg.Join
	cc.SecretKey = key
	cc.Logger = n.log.With("role", "cluster")
	cc.Meta = cluster.Meta{
		Roles: n.cfg.RoleNames,
		Addrs: n.configuredAddrs(),
		State: cluster.StateStarting,
	}
	if n.cfg.Has(RoleService) {
		cc.Meta.Service = n.cfg.Service
	}
	if n.cfg.hasStore() {
		// The default group is gossiped as "", so that stages 1 to 9
		// announce what they always did.
		cc.Meta.Group, _ = store.ParseGroup(n.cfg.RoleConfig.Store.Group)
	}
	c, err := cluster.New(cc)
	if err != nil {
		if errors.Is(err, cluster.ErrKeyRequired) {
			return configErr("--addr %s is not a loopback address, so gossip must be encrypted: make a key with the keygen command and give every node the same one (--cluster-key-file FILE or NODE_CLUSTER_KEY; not --cluster-key, which every user of the machine can read)", n.cfg.Addr)
		}
		return err
	}
	if err := c.Open(); err != nil {
		return err
	}
	n.cluster = c
	return nil
}

// openNATS starts the embedded NATS server routed to the NATS servers seen in
// membership, and keeps its peers in step with membership from then on.
func (n *Node) openNATS(ctx context.Context) error {
	qc := n.cfg.RoleConfig.NATS
	qc.Name = n.cfg.Name
	qc.Host = n.cfg.Addr
	qc.ClientPort = n.cfg.Ports.NATS
	qc.ClusterPort = n.cfg.Ports.NATSCluster
	qc.DataDir = n.cfg.DataDir + "/nats"
	qc.Routes = n.natsPeers()
	qc.Logger = n.log.With("role", "nats")
	qc.Password = n.secrets.NATS
	if n.tls != nil {
		qc.TLS, qc.RouteTLS = n.tls.Server, n.tls.Mutual
	}
	s, err := natsserver.NewServer(qc)
	if err != nil {
		return err
	}
	if err := s.Open(); err != nil {
		return err
	}
	n.nats = s
	n.onMembership(ctx, func() {
		if err := s.SetPeers(n.natsPeers()); err != nil {
			n.log.Warn("update nats peers", "role", "nats", "err", err)
		}
	})
	return nil
}

// natsPeers returns the cluster URLs of the other alive NATS servers.
func (n *Node) natsPeers() []string {
	var urls []string
	for _, m := range n.cluster.Members() {
		if m.Name == n.cfg.Name || m.Status != cluster.StatusAlive {
			continue
		}
		if a := m.RoleAddr("nats-cluster"); a != "" {
			urls = append(urls, "nats-route://"+a)
		}
	}
	return urls
}

// StoreNodes implements store.Resolver from membership: the alive store
// nodes that are not draining, with their store addresses and groups, of
// every group (a store.Client keeps its own group's).
func (n *Node) StoreNodes() []store.NodeInfo {
	if l := n.stores.Load(); l != nil {
		return l.clients
	}
	return storeListsOf(n.cluster.Members()).clients
}

// storeLists are the store nodes of membership as two lists, made once per
// change of membership (watchMembership) rather than on every store call,
// which reads them: copying and sorting the members on each call was a
// sixth of a stage-10 service's CPU. The slices are never changed after.
type storeLists struct {
	// clients are the store nodes a client may call: alive, neither
	// starting nor draining (StoreNodes).
	clients []store.NodeInfo
	// all are the alive store nodes, starting and draining ones too
	// (storeMembers).
	all []store.NodeInfo
}

func storeListsOf(members []cluster.Member) *storeLists {
	l := &storeLists{}
	for _, m := range members {
		a := m.RoleAddr("store")
		if m.Status != cluster.StatusAlive || a == "" {
			continue
		}
		info := store.NodeInfo{Name: m.Name, Addr: a, Primary: m.HasRole(RolePrimary), Group: m.Group}
		l.all = append(l.all, info)
		if m.State != cluster.StateDraining && m.State != cluster.StateStarting {
			l.clients = append(l.clients, info)
		}
	}
	return l
}

// addrs returns the bound address of every port the node serves.
func (n *Node) addrs() map[string]string {
	a := map[string]string{"gossip": n.cluster.Addr()}
	if ad := n.advertisedAdmin(); ad != "" {
		a["admin"] = ad
	}
	if n.nats != nil {
		a["nats"] = hostPort(n.nats.ClientURL())
		a["nats-cluster"] = hostPort(n.nats.ClusterURL())
	}
	for _, r := range n.roles {
		if ad, ok := r.r.(interface{ Addr() string }); ok {
			a[r.name] = ad.Addr()
		}
	}
	return a
}

// configuredAddrs returns the addresses from the configured ports, announced
// while the node starts.
func (n *Node) configuredAddrs() map[string]string {
	a := map[string]string{}
	for _, p := range n.cfg.portList() {
		if p.port != 0 {
			a[p.role] = net.JoinHostPort(n.cfg.Addr, strconv.Itoa(p.port))
		}
	}
	return a
}

// hostPort strips the scheme of a URL such as nats://127.0.0.1:4222.
func hostPort(url string) string {
	for i := 0; i+2 < len(url); i++ {
		if url[i:i+3] == "://" {
			return url[i+3:]
		}
	}
	return url
}

// Ready reports whether the node and every role are ready to serve.
func (n *Node) Ready() bool {
	if !n.ready.Load() {
		return false
	}
	if n.nats != nil && !n.nats.Ready() {
		return false
	}
	for _, r := range n.roles {
		if !r.r.Ready() {
			return false
		}
	}
	return true
}

// Cluster returns the node's membership.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

// Registry returns the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Addr returns the bound address of a port ("app", "lb", "store", "admin",
// "nats", "gossip", ...), or "" if the node does not serve it.
func (n *Node) Addr(port string) string {
	if n.cluster == nil {
		return ""
	}
	return n.addrs()[port]
}

// AdminAddr returns the bound admin address.
func (n *Node) AdminAddr() string {
	if n.admin == nil {
		return ""
	}
	return n.admin.Addr()
}

// Close stops the node gracefully. The order, and why:
//
//  1. readiness goes false and membership says "draining", so load balancers
//     (health checks) and clients (membership) stop sending new work;
//  2. after DrainTimeout (on a service node, ServiceDrain if longer: its
//     callers read draining from membership) the serving roles close in
//     reverse start order (edge, lb, app, service, cache, store's HTTP),
//     each finishing its in-flight requests; the store's database closes
//     with its role;
//  3. the node leaves the cluster, so peers see "left" at once instead of
//     suspecting a failure;
//  4. the NATS server shuts down after the roles that publish to it;
//  5. the admin endpoints go last, so the node can be watched until the end.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.ready.Store(false)
	if n.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := n.cluster.SetState(ctx, cluster.StateDraining)
		cancel()
		if err != nil {
			n.log.Warn("announce draining", "err", err)
		}
		wait := n.drainDelay()
		n.log.Info("draining", "for", wait)
		time.Sleep(wait)
	}
	return n.shutdown(true)
}

// drainDelay is how long Close serves on after announcing draining.
func (n *Node) drainDelay() time.Duration {
	if n.cfg.Has(RoleService) {
		return max(n.cfg.DrainTimeout, n.cfg.ServiceDrain)
	}
	return n.cfg.DrainTimeout
}

// Kill stops the node as abruptly as a process can be stopped from inside:
// no draining, no leave; peers must detect the failure. Tests use it as the
// in-process stand-in for SIGKILL.
func (n *Node) Kill() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.ready.Store(false)
	return n.shutdown(false)
}

func (n *Node) shutdown(leave bool) error {
	var errs []error
	for i := len(n.roles) - 1; i >= 0; i-- {
		r := n.roles[i]
		if err := r.r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", r.name, err))
		}
	}
	// n.roles stays as it is: the admin endpoints (still serving) read it
	// without a lock, which is safe only because nothing writes it after
	// Open.
	if n.client != nil {
		n.client.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	if n.cluster != nil {
		var err error
		if leave {
			err = n.cluster.Close()
		} else {
			err = n.cluster.Shutdown()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("leave cluster: %w", err))
		}
	}
	n.wg.Wait()
	if n.nats != nil {
		if err := n.nats.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close nats: %w", err))
		}
	}
	if n.admin != nil {
		if err := n.admin.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close admin: %w", err))
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		n.log.Error("node stopped with errors", "err", err)
	} else {
		n.log.Info("node stopped")
	}
	return err
}

// abort undoes a failed Open.
func (n *Node) abort() {
	n.closed.Store(true)
	n.shutdown(true)
}

func isAddrNotAvail(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }
