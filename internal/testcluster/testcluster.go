// Package testcluster starts real scalestack nodes inside a test: each node
// is a pkg/node.Node on its own loopback address (127.0.0.x) with free ports,
// joined to the first node started. Tests kill, stop and restart nodes by
// name or by role, ask which store node is primary (Primary, Replicas,
// WaitForNewPrimary, through internal/storewatch), and wait for conditions
// with internal/testwait; everything is closed by t.Cleanup.
//
// Kill is the in-process stand-in for SIGKILL (no draining, no leave).
// There is no in-process SIGSTOP: tests that pause a node, or need a real
// SIGKILL, run the binary (internal/nodebin; see internal/e2e).
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Cluster is a set of nodes started by one test.
type Cluster struct {
	t       testing.TB
	dir     string
	mu      sync.Mutex
	nodes   map[string]*Member
	order   []string
	nextIP  int
	seed    string // gossip address of the first node
	verbose bool
}

// Member is one node of the cluster, running or not.
type Member struct {
	Name string
	Cfg  node.Config
	Node *node.Node // nil while stopped
}

// New returns an empty cluster whose nodes keep their data under
// t.TempDir(). Set SCALESTACK_TEST_LOG=1 to see the nodes' logs.
func New(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{t: t, dir: t.TempDir(), nodes: map[string]*Member{}, nextIP: firstIP(), verbose: os.Getenv("SCALESTACK_TEST_LOG") != ""}
	t.Cleanup(c.closeAll)
	return c
}

// firstIP spreads test packages over different address ranges, so that
// parallel test processes rarely pick the same address and port.
func firstIP() int { return 2 + (os.Getpid()%50)*4 }

// Start starts a node with the given roles and waits until it is ready.
func (c *Cluster) Start(name string, roles ...string) *node.Node {
	c.t.Helper()
	return c.StartWith(name, roles, nil)
}

// StartWith starts a node whose configuration mod may change before it
// opens (role flags, NATS mode, ...), and waits until it is ready.
func (c *Cluster) StartWith(name string, roles []string, mod func(*node.Config)) *node.Node {
	c.t.Helper()
	m := c.add(name, roles, mod)
	n := c.openNode(m)
	c.waitReady(m.Name, n)
	return n
}

// Spec is one node of StartGroup.
type Spec struct {
	Name  string
	Roles []string
}

// StartGroup starts nodes that are ready only together, such as a store
// group with failover (the lease needs a majority of the group's NATS
// servers), and waits until every one is ready. mod, if not nil, changes
// each configuration before it opens.
func (c *Cluster) StartGroup(mod func(*node.Config), specs ...Spec) []*node.Node {
	c.t.Helper()
	var out []*node.Node
	for _, sp := range specs {
		out = append(out, c.openNode(c.add(sp.Name, sp.Roles, mod)))
	}
	for i, n := range out {
		c.waitReady(specs[i].Name, n)
	}
	return out
}

// add makes the configuration of a new node: its own address, free ports,
// a data directory, and the first node's gossip address to join.
func (c *Cluster) add(name string, roles []string, mod func(*node.Config)) *Member {
	c.t.Helper()
	c.mu.Lock()
	if _, ok := c.nodes[name]; ok {
		c.mu.Unlock()
		c.t.Fatalf("testcluster: node %q started twice", name)
	}
	addr := fmt.Sprintf("127.0.%d.%d", c.nextIP/250, 2+c.nextIP%250)
	c.nextIP++
	seed := c.seed
	c.mu.Unlock()

	cfg := node.DefaultConfig()
	cfg.Name = name
	cfg.RoleNames = roles
	cfg.Addr = addr
	cfg.DataDir = filepath.Join(c.dir, name)
	cfg.DrainTimeout = 0
	if seed != "" {
		cfg.Join = []string{seed}
	}
	ports, err := FreePorts(addr, 9)
	if err != nil {
		c.t.Fatalf("testcluster: free ports on %s: %v", addr, err)
	}
	cfg.Ports = node.Ports{Edge: ports[0], LB: ports[1], App: ports[2], Store: ports[3], Cache: ports[4],
		NATS: ports[5], NATSCluster: ports[6], Gossip: ports[7], Admin: ports[8]}
	if mod != nil {
		mod(&cfg)
	}
	m := &Member{Name: name, Cfg: cfg}
	c.mu.Lock()
	c.nodes[name] = m
	c.order = append(c.order, name)
	c.mu.Unlock()
	return m
}

// open opens m's node and waits until it is ready.
func (c *Cluster) open(m *Member) *node.Node {
	c.t.Helper()
	n := c.openNode(m)
	c.waitReady(m.Name, n)
	return n
}

// openNode opens m's node without waiting for it to be ready; the first
// node opened becomes the seed the later ones join.
func (c *Cluster) openNode(m *Member) *node.Node {
	c.t.Helper()
	cfg := m.Cfg
	cfg.Logger = c.logger(m.Name)
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("testcluster: new node %s: %v", m.Name, err)
	}
	if err := n.Open(); err != nil {
		c.t.Fatalf("testcluster: open node %s: %v", m.Name, err)
	}
	c.mu.Lock()
	m.Node = n
	if c.seed == "" {
		c.seed = n.Addr("gossip")
	}
	c.mu.Unlock()
	return n
}

func (c *Cluster) waitReady(name string, n *node.Node) {
	c.t.Helper()
	testwait.RetryUntil(c.t, 30*time.Second, func() error {
		if !n.Ready() {
			return fmt.Errorf("node %s not ready", name)
		}
		return nil
	})
}

func (c *Cluster) logger(name string) *slog.Logger {
	if !c.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// Node returns the running node called name; the test fails if it is not
// running.
func (c *Cluster) Node(name string) *node.Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.nodes[name]
	if !ok || m.Node == nil {
		c.t.Fatalf("testcluster: node %q is not running", name)
	}
	return m.Node
}

// Running returns the names of the running nodes, sorted.
func (c *Cluster) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name, m := range c.nodes {
		if m.Node != nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Kill stops a node abruptly: no draining, no leave.
func (c *Cluster) Kill(name string) {
	c.t.Helper()
	n := c.take(name)
	n.Kill()
}

// Stop stops a node gracefully: draining, leave, ordered close.
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	n := c.take(name)
	if err := n.Close(); err != nil {
		c.t.Errorf("testcluster: close %s: %v", name, err)
	}
}

// Restart starts a stopped or killed node again with the same
// configuration and data, and waits until it is ready.
func (c *Cluster) Restart(name string) *node.Node {
	c.t.Helper()
	c.mu.Lock()
	m, ok := c.nodes[name]
	c.mu.Unlock()
	if !ok {
		c.t.Fatalf("testcluster: no node %q", name)
	}
	if m.Node != nil {
		c.t.Fatalf("testcluster: node %q is still running", name)
	}
	// Join whoever is running now: the first node may be the one restarting.
	if seeds := c.joinList(name); len(seeds) > 0 {
		m.Cfg.Join = seeds
	}
	return c.open(m)
}

// joinList returns the gossip addresses of the running nodes other than name.
func (c *Cluster) joinList(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var seeds []string
	for _, n := range c.order {
		m := c.nodes[n]
		if n != name && m.Node != nil {
			seeds = append(seeds, m.Node.Addr("gossip"))
		}
	}
	return seeds
}

func (c *Cluster) take(name string) *node.Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.nodes[name]
	if !ok || m.Node == nil {
		c.t.Fatalf("testcluster: node %q is not running", name)
	}
	n := m.Node
	m.Node = nil
	return n
}

// WaitForMembers waits until every running node sees exactly want alive
// members.
func (c *Cluster) WaitForMembers(want int, timeout time.Duration) {
	c.t.Helper()
	testwait.RetryUntil(c.t, timeout, func() error {
		for _, name := range c.Running() {
			n := c.Node(name)
			got := 0
			for _, m := range n.Cluster().Members() {
				if m.Status == cluster.StatusAlive {
					got++
				}
			}
			if got != want {
				return fmt.Errorf("%s sees %d alive members, want %d", name, got, want)
			}
		}
		return nil
	})
}

// WaitForStatus waits until node observer sees member name with status want.
func (c *Cluster) WaitForStatus(observer, name string, want cluster.Status, timeout time.Duration) {
	c.t.Helper()
	testwait.RetryUntil(c.t, timeout, func() error {
		for _, m := range c.Node(observer).Cluster().Members() {
			if m.Name == name {
				if m.Status == want {
					return nil
				}
				return fmt.Errorf("%s sees %s as %s, want %s", observer, name, m.Status, want)
			}
		}
		return fmt.Errorf("%s does not know %s", observer, name)
	})
}

// storeNodes returns the running nodes with a store role, as
// internal/storewatch reaches them, in start order.
func (c *Cluster) storeNodes() []storewatch.Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []storewatch.Node
	for _, name := range c.order {
		m := c.nodes[name]
		if m.Node == nil || !(m.Cfg.Has(node.RolePrimary) || m.Cfg.Has(node.RoleReplica)) {
			continue
		}
		var token string
		if m.Cfg.ClusterKey != "" {
			k, err := cluster.ParseKey(m.Cfg.ClusterKey)
			if err != nil {
				c.t.Fatalf("testcluster: cluster key of %s: %v", name, err)
			}
			token = cluster.DeriveSecrets(k).Store
		}
		out = append(out, storewatch.Node{Name: name, Addr: m.Node.Addr("store"), Token: token})
	}
	return out
}

// Primary waits until exactly one running store node says it is primary
// with its lease good, and returns its name and epoch.
func (c *Cluster) Primary(timeout time.Duration) (name string, epoch uint64) {
	c.t.Helper()
	testwait.RetryUntil(c.t, timeout, func() error {
		n, st, err := storewatch.Primary(context.Background(), c.storeNodes())
		name, epoch = n.Name, st.Epoch
		return err
	})
	return name, epoch
}

// WaitForNewPrimary waits until a node other than old holds the lease at
// an epoch above oldEpoch (old's, from Primary), and returns it and its
// epoch: failover has happened.
func (c *Cluster) WaitForNewPrimary(old string, oldEpoch uint64, timeout time.Duration) (name string, epoch uint64) {
	c.t.Helper()
	testwait.RetryUntil(c.t, timeout, func() error {
		n, st, err := storewatch.NewPrimary(context.Background(), c.storeNodes(), old, oldEpoch)
		name, epoch = n.Name, st.Epoch
		return err
	})
	return name, epoch
}

// Replicas returns the running store nodes that say they are replicas,
// sorted; a node that does not answer is not one.
func (c *Cluster) Replicas() []string {
	c.t.Helper()
	var out []string
	for _, n := range c.storeNodes() {
		st, err := storewatch.Replication(context.Background(), n)
		if err == nil && st.Role == server.RoleReplica {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}

// WithRole returns the running nodes that run role, sorted.
func (c *Cluster) WithRole(role string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name, m := range c.nodes {
		if m.Node != nil && m.Cfg.Has(role) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// KillPrimary kills the store's primary (see Primary) and returns its name
// and the epoch it held, for WaitForNewPrimary.
func (c *Cluster) KillPrimary(timeout time.Duration) (name string, epoch uint64) {
	c.t.Helper()
	name, epoch = c.Primary(timeout)
	c.Kill(name)
	return name, epoch
}

// KillRole kills every running node that runs role and returns their names.
func (c *Cluster) KillRole(role string) []string {
	c.t.Helper()
	names := c.WithRole(role)
	for _, name := range names {
		c.Kill(name)
	}
	return names
}

func (c *Cluster) closeAll() {
	for _, name := range c.Running() {
		c.mu.Lock()
		n := c.nodes[name].Node
		c.nodes[name].Node = nil
		c.mu.Unlock()
		n.Kill()
	}
}

// FreePorts returns n distinct ports free for TCP and UDP on addr. Another
// process may take one before it is used; with per-test addresses that is
// rare enough.
func FreePorts(addr string, n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(addr, fmt.Sprint(p)))
		if err != nil {
			continue // taken for UDP: try another
		}
		u.Close()
		ports = append(ports, p)
	}
	if len(ports) != n {
		return nil, errors.New("not enough free ports")
	}
	return ports, nil
}
