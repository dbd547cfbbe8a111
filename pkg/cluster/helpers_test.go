package cluster_test

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// fastConfig returns a Config for a node on ip with a free port and timings
// about five times faster than DefaultConfig, so that failure detection
// takes about a second (see FailureDetection). The probe timeout and the
// suspicion multiplier leave room for a machine slowed down by -race and by
// other test packages running at the same time: tighter, a busy CI machine
// declares live nodes dead.
func fastConfig(tb testing.TB, name, ip string, seeds ...string) cluster.Config {
	tb.Helper()
	cfg := cluster.DefaultConfig()
	cfg.Name = name
	cfg.BindAddr = ip
	cfg.BindPort = 0
	cfg.Seeds = seeds
	cfg.ProbeInterval = 100 * time.Millisecond
	cfg.ProbeTimeout = 80 * time.Millisecond
	cfg.SuspicionMult = 5
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.PushPullInterval = time.Second
	cfg.TCPTimeout = time.Second
	cfg.RejoinInterval = 100 * time.Millisecond
	cfg.LeaveTimeout = time.Second
	cfg.DeadNodeReclaimTime = 300 * time.Millisecond
	cfg.Logger = testLogger(tb, name)
	cfg.Meta = cluster.Meta{
		Roles: []string{"app"},
		Addrs: map[string]string{"app": ip + ":8081", "admin": ip + ":9090"},
		State: cluster.StateUp,
	}
	return cfg
}

// start builds and opens a node, and closes it when the test ends.
func start(tb testing.TB, cfg cluster.Config) *cluster.Cluster {
	tb.Helper()
	c, err := cluster.New(cfg)
	if err != nil {
		tb.Fatalf("New(%s): %v", cfg.Name, err)
	}
	if err := c.Open(); err != nil {
		tb.Fatalf("Open(%s): %v", cfg.Name, err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("Close(%s): %v", cfg.Name, err)
		}
	})
	return c
}

// statusOf returns name's status as seen by c, or "" if c does not know it.
func statusOf(c *cluster.Cluster, name string) cluster.Status {
	for _, m := range c.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func memberOf(tb testing.TB, c *cluster.Cluster, name string) cluster.Member {
	tb.Helper()
	for _, m := range c.Members() {
		if m.Name == name {
			return m
		}
	}
	tb.Fatalf("%s does not know %s", c.Local().Name, name)
	return cluster.Member{}
}

// testLogger sends info-level lines to the test log while the test runs;
// memberlist goroutines that outlive the test log nowhere.
func testLogger(tb testing.TB, name string) *slog.Logger {
	w := &testWriter{tb: tb}
	tb.Cleanup(w.stop) // registered before the node's Close, so it runs after it
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type testWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func itoa(i int) string { return strconv.Itoa(i) }

// port returns the port of a host:port address.
func port(tb testing.TB, addr string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// freePort returns a port that is free for both TCP and UDP on ip.
func freePort(tb testing.TB, ip string) int {
	tb.Helper()
	for range 10 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			tb.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p)))
		l.Close()
		if err == nil {
			u.Close()
			return p
		}
	}
	tb.Fatalf("no free TCP and UDP port on %s", ip)
	return 0
}
