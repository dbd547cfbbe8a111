package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store"
)

// Three nodes joined by gossip see each other, a killed node is seen as
// dead, and it is alive again after a restart.
func TestMembershipKillRestart(t *testing.T) {
	tc := testcluster.New(t)
	for _, name := range []string{"n1", "n2", "n3"} {
		tc.StartWith(name, []string{node.RolePrimary}, func(c *node.Config) { c.NATS = node.NATSOff })
	}
	tc.WaitForMembers(3, 5*time.Second)

	m := memberOf(t, tc.Node("n1"), "n3")
	if !m.HasRole(node.RolePrimary) || m.State != cluster.StateUp || m.RoleAddr("store") == "" || m.RoleAddr("admin") == "" {
		t.Fatalf("n1 sees n3 as %+v, want role primary, state up, store and admin addresses", m)
	}

	killed := time.Now()
	tc.Kill("n3")
	tc.WaitForStatus("n1", "n3", cluster.StatusDead, 15*time.Second)
	t.Logf("n3 declared dead %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	tc.Restart("n3")
	tc.WaitForMembers(3, 10*time.Second)
}

// A gracefully stopped node leaves: the others see it as left, not dead.
func TestGracefulStopLeaves(t *testing.T) {
	tc := testcluster.New(t)
	tc.StartWith("a", []string{node.RolePrimary}, func(c *node.Config) { c.NATS = node.NATSOff })
	tc.StartWith("b", []string{node.RolePrimary}, func(c *node.Config) { c.NATS = node.NATSOff })
	tc.WaitForMembers(2, 5*time.Second)
	tc.Stop("b")
	tc.WaitForStatus("a", "b", cluster.StatusLeft, 5*time.Second)
}

// Three store nodes form one NATS cluster: an R3 stream accepts messages,
// and still does after one of the three is killed.
func TestNATSClusterSurvivesKill(t *testing.T) {
	tc := testcluster.New(t)
	for _, name := range []string{"s1", "s2", "s3"} {
		tc.Start(name, node.RolePrimary)
	}
	tc.WaitForMembers(3, 5*time.Second)

	nc, err := nats.Connect(strings.Join([]string{
		"nats://" + tc.Node("s1").Addr("nats"), "nats://" + tc.Node("s2").Addr("nats"), "nats://" + tc.Node("s3").Addr("nats"),
	}, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Each attempt has its own deadline: a request sent before the
	// JetStream meta leader is elected gets no answer.
	attempt := func(fn func(ctx context.Context) error) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return fn(ctx)
		}
	}
	testwait.RetryUntil(t, 30*time.Second, attempt(func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	}))
	publish := func(round, n int) {
		t.Helper()
		for i := range n {
			// A retried publish carries the same message ID, so it is stored once.
			testwait.RetryUntil(t, 30*time.Second, attempt(func(ctx context.Context) error {
				_, err := js.Publish(ctx, "t.x", []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprintf("m-%d-%d", round, i)))
				return err
			}))
		}
	}
	publish(1, 10)
	tc.Kill("s3")
	publish(2, 10)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Fatalf("stream holds %d messages, want 20", info.State.Msgs)
	}
}

// The node's store serves writes, and /status reports the store section.
func TestStoreRoleAndStatus(t *testing.T) {
	tc := testcluster.New(t)
	n := tc.StartWith("db", []string{node.RolePrimary}, func(c *node.Config) { c.NATS = node.NATSOff })
	cl := store.NewClient(store.ClientConfig{Resolver: n})
	defer cl.Close()
	ctx := context.Background()
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := cl.Txn(ctx, store.Put("b", "k", []byte("v")))
		return err
	})
	got, err := cl.Get(ctx, "b", "k")
	if err != nil || string(got) != "v" {
		t.Fatalf("Get(b, k) = %q, %v; want v", got, err)
	}
	st := n.Status()
	if _, ok := st.Sections["store"]; !ok || !st.Ready || st.Name != "db" {
		t.Fatalf("Status() = %+v, want ready node db with a store section", st)
	}
}

// A port in use is refused before anything starts, naming the flag.
func TestPortInUse(t *testing.T) {
	ports, err := testcluster.FreePorts("127.0.0.1", 3)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := node.DefaultConfig()
	cfg.RoleNames = []string{node.RolePrimary}
	cfg.Name = "x"
	cfg.NATS = node.NATSOff
	cfg.DataDir = t.TempDir()
	cfg.Ports.Store, cfg.Ports.Gossip, cfg.Ports.Admin = ports[0], ports[1], ports[2]
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Open()
	if !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), "--store-port") {
		t.Fatalf("Open() = %v, want a configuration error naming --store-port", err)
	}
	// Nothing is left half-started: the other ports are free again.
	for _, p := range ports[1:] {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d still held after a failed Open: %v", p, err)
		}
		l.Close()
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mod   func(*node.Config)
		wants string
	}{
		{"no roles", func(c *node.Config) { c.RoleNames = nil }, "--roles"},
		{"unknown role", func(c *node.Config) { c.RoleNames = []string{"db"} }, `unknown role "db"`},
		{"bad addr", func(c *node.Config) { c.Addr = "300.1.1.1" }, "--addr"},
		{"wildcard addr", func(c *node.Config) { c.Addr = "0.0.0.0" }, "--addr"},
		{"bad join", func(c *node.Config) { c.Join = []string{"nohost"} }, "--join"},
		{"bad nats", func(c *node.Config) { c.NATS = "maybe" }, "--nats"},
		{"bad port", func(c *node.Config) { c.Ports.App = 70000 }, "--app-port"},
		{"primary and replica", func(c *node.Config) { c.RoleNames = []string{"primary", "replica"} }, "primary and replica"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.RoleNames = []string{node.RolePrimary}
			tt.mod(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("Validate() = %v, want a configuration error mentioning %q", err, tt.wants)
			}
		})
	}
}

func memberOf(t *testing.T, n *node.Node, name string) cluster.Member {
	t.Helper()
	for _, m := range n.Cluster().Members() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s does not know %s", n.Config().Name, name)
	return cluster.Member{}
}

// With a cluster key, the nodes' NATS servers accept only clients that
// know it: the nodes' own roles (the store's failover lease, the worker)
// connect and work, and a client without the derived password is refused.
func TestClusterKeyGuardsNATS(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	withKey := func(c *node.Config) { c.ClusterKey = key }
	tc := testcluster.New(t)
	// StartWith waits until each node is ready: the worker is ready only
	// when its NATS connection consumes jobs, so a refused password fails
	// the test here.
	tc.StartWith("db-1", []string{node.RolePrimary}, withKey)
	tc.StartWith("db-2", []string{node.RoleReplica}, withKey)
	tc.StartWith("worker-1", []string{node.RoleWorker}, withKey)
	tc.WaitForMembers(3, 5*time.Second)

	url := "nats://" + tc.Node("db-1").Addr("nats")
	if nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a NATS client without credentials connected to a keyed cluster")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: %v, want nats.ErrAuthorization", err)
	}
	raw, _ := cluster.ParseKey(key)
	nc, err := nats.Connect(url, nats.UserInfo(queue.AuthUser, cluster.DeriveSecret(raw, "nats")))
	if err != nil {
		t.Fatalf("connect with the password derived from the key: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// An R2 stream needs both store nodes' NATS servers, routed to each
	// other with the password.
	testwait.RetryUntil(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "KEYED", Subjects: []string{"keyed.>"}, Replicas: 2})
		return err
	})
}
