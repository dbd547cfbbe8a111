package faultrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/netns"
	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Default ports of the roles (docs/architecture.md): every node has a host
// of its own, so each keeps the defaults, as on separate machines.
const (
	gossipPort = "7946"
	adminPort  = "9090"
	storePort  = "7070"
	lbPort     = "8080"
)

// nodeSpec is one node of the stage-8 topology of issue 14 and the flags
// pkg/launch gives it at stage 8 (replicated store nodes, queued apps,
// workers with the cache tier, an lb without --sticky).
type nodeSpec struct {
	name  string
	roles string
	flags []string
}

// topology is the eight hosts of the fault run, in start order after db-1.
// The store nodes come first so that a node's index is its host's index.
func topology() []nodeSpec {
	replicated := []string{"--sync=1", "--failover"}
	queuedApp := []string{"--reads=replicas", "--cache=on", "--sessions=shared", "--jobs=queue"}
	return []nodeSpec{
		{"db-1", "primary", replicated},
		{"db-2", "replica", replicated},
		{"db-3", "replica", replicated},
		{"cache-1", "cache", nil},
		{"worker-1", "worker", []string{"--cache=on"}},
		{"app-1", "app", queuedApp},
		{"app-2", "app", queuedApp},
		{"lb-1", "lb", nil},
	}
}

// Node is one node process of the cluster on its host. Start, Kill, Pause
// and Resume are called by one goroutine at a time (the run's).
type Node struct {
	Name  string
	Roles string
	host  *netns.Host
	flags []string
	data  string
	log   string
	// storeToken is the store port's credential, derived from the
	// cluster key, for the harness's own status and checksum reads.
	storeToken string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// Addr is the node's host address.
func (n *Node) Addr() string { return n.host.Addr() }

// Admin is the node's admin address (readyz, status).
func (n *Node) Admin() string { return net.JoinHostPort(n.Addr(), adminPort) }

// Store is the node's store API address (store nodes only).
func (n *Node) Store() string { return net.JoinHostPort(n.Addr(), storePort) }

// Data is the node's data directory, kept across restarts.
func (n *Node) Data() string { return n.data }

// Running reports whether the process is alive (paused counts as alive).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Cluster is the eight node processes of a fault run, each in a network
// namespace of its own, on one netns.Net.
type Cluster struct {
	nodeBin string
	key     string
	// storeToken is the store port's credential (cluster.DeriveSecrets).
	storeToken string
	net        *netns.Net
	nodes      []*Node
	byName     map[string]*Node
	join       string
}

// startCluster makes the hosts and starts every node, db-1 first (the
// others join its gossip), and waits until every node is ready and db-1 is
// primary with both replicas streaming. dir holds the data directories and
// logs. On an error everything made is removed.
func startCluster(ctx context.Context, nodeBin, netName, dir string, logf func(string, ...any)) (_ *Cluster, err error) {
	specs := topology()
	nt, err := netns.New(ctx, netName, len(specs))
	if err != nil {
		return nil, fmt.Errorf("make hosts: %w", err)
	}
	c := &Cluster{nodeBin: nodeBin, net: nt, byName: map[string]*Node{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	key, err := exec.CommandContext(ctx, nodeBin, "keygen").Output()
	if err != nil {
		return nil, fmt.Errorf("node keygen: %w", err)
	}
	c.key = strings.TrimSpace(string(key))
	parsed, err := cluster.ParseKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("node keygen printed a bad key: %w", err)
	}
	c.storeToken = cluster.DeriveSecrets(parsed).Store
	c.join = net.JoinHostPort(nt.Host(0).Addr(), gossipPort)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// The apps count rate limits per client: behind the lb they must take
	// the client's address from its X-Forwarded-For, as an operator sets
	// --trusted-proxies across machines (docs/api.md, Rate limits).
	var lbAddr string
	for i, s := range specs {
		if s.roles == "lb" {
			lbAddr = nt.Host(i).Addr()
		}
	}
	for i, s := range specs {
		if s.roles == "app" {
			s.flags = append(slices.Clone(s.flags), "--trusted-proxies="+lbAddr+"/32")
		}
		n := &Node{Name: s.name, Roles: s.roles, host: nt.Host(i), flags: s.flags, storeToken: c.storeToken,
			data: filepath.Join(dir, "data", s.name), log: filepath.Join(dir, "logs", s.name+".log")}
		c.nodes = append(c.nodes, n)
		c.byName[n.Name] = n
	}
	logf("hosts %s: %s", nt.Prefix(), c.describe())
	if err := c.Start(c.nodes[0]); err != nil {
		return nil, err
	}
	// The others join db-1's gossip, so it must listen first; db-1 alone
	// is not ready (its lease needs a majority of the store nodes).
	if err := poll.Until(ctx, 30*time.Second, pollEvery, func() error {
		conn, err := net.DialTimeout("tcp", c.join, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("db-1's gossip port: %w", err)
	}
	for _, n := range c.nodes[1:] {
		if err := c.Start(n); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	if err := poll.Until(ctx, 120*time.Second, pollEvery, func() error {
		for _, n := range c.nodes {
			if err := ready(ctx, n); err != nil {
				return err
			}
		}
		st, err := storewatch.Replication(ctx, c.nodes[0].watched())
		if err != nil {
			return err
		}
		if st.Role != server.RolePrimary || len(st.Replicas) != 2 {
			return fmt.Errorf("db-1 is %s with %d replicas streaming, want primary with 2", st.Role, len(st.Replicas))
		}
		// The primary adds one voter per lease renewal: until all three
		// vote, losing the one other voter loses the majority, which is
		// not the steady state the faults are meant to hit.
		if st.Lease == nil {
			return errors.New("db-1 has no lease")
		}
		if len(st.Lease.Voters) != 3 {
			return fmt.Errorf("db-1's lease has voters %v, want the 3 store nodes", st.Lease.Voters)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("cluster not ready: %w", err)
	}
	logf("all 8 nodes ready %.1fs after the last start; db-1 primary with 2 replicas and 3 voters", time.Since(began).Seconds())
	return c, nil
}

func (c *Cluster) describe() string {
	var parts []string
	for _, n := range c.nodes {
		parts = append(parts, n.Name+"="+n.Addr())
	}
	return strings.Join(parts, " ")
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node { return c.byName[name] }

// StoreNodes returns db-1, db-2 and db-3.
func (c *Cluster) StoreNodes() []*Node { return c.nodes[:3] }

// LB is the base URL of the load balancer.
func (c *Cluster) LB() string { return "http://" + net.JoinHostPort(c.nodes[7].Addr(), lbPort) }

// Start runs the node in its host with its data directory and flags, as a
// person restarting it would; its log is appended to.
func (c *Cluster) Start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := os.MkdirAll(n.data, 0o755); err != nil {
		return err
	}
	args := append([]string{"run", "--roles", n.Roles, "--name", n.Name, "--addr", n.Addr(),
		"--data", n.data, "--join", c.join}, n.flags...)
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== faultrun: start %s at %s: %s\n", n.Name, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	// The namespace's processes are killed by the Net's Close whatever
	// happens here, so the command needs no context of its own.
	cmd := n.host.Command(context.Background(), c.nodeBin, args...)
	cmd.Env = append(os.Environ(), "NODE_CLUSTER_KEY="+c.key)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	n.cmd, n.done, n.paused = cmd, done, false
	return nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.paused = false
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Pause sends SIGSTOP; Resume sends SIGCONT.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume undoes Pause.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s: not started", n.Name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", n.Name, sig, err)
	}
	n.paused = paused
	return nil
}

// Partition cuts n's host off the network; Heal brings it back.
func (c *Cluster) Partition(n *Node) error { return c.net.Partition(n.host.Index()) }

// Heal undoes Partition.
func (c *Cluster) Heal(n *Node) error { return c.net.Heal(n.host.Index()) }

// Close kills every node and removes the hosts. A paused node is resumed
// first, so that nothing waits on it (SIGKILL ends a stopped process too;
// this is for the Wait goroutines' sake only).
func (c *Cluster) Close() error {
	for _, n := range c.nodes {
		n.mu.Lock()
		paused := n.paused
		n.mu.Unlock()
		if paused {
			n.Resume()
		}
		n.Kill()
	}
	return c.net.Close()
}

// tailLog returns the last lines of a node's log that are not NATS
// chatter (kept: JetStream and leader lines), for a failure report.
func tailLog(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, "component=nats") || strings.Contains(l, "JetStream") || strings.Contains(l, "leader") {
			keep = append(keep, l)
		}
	}
	if len(keep) > lines {
		keep = keep[len(keep)-lines:]
	}
	return strings.Join(keep, "\n")
}

// statusClient polls nodes; a partitioned or paused node answers nothing,
// so a poll gives up after a second.
var statusClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
	MaxIdleConnsPerHost: 4,
}}

// ready asks the node's admin /readyz.
func ready(ctx context.Context, n *Node) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Admin()+"/readyz", nil)
	resp, err := statusClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s not ready: %s", n.Name, resp.Status)
	}
	return nil
}
