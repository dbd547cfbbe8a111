package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// group is a set of store servers replicating among themselves, as a test
// builds them: names, data directories, and whether they fail over.
type group struct {
	tb       testing.TB
	failover bool
	mu       sync.Mutex
	servers  map[string]*server.Server
	dirs     map[string]string
	edit     func(*server.Config)
	// storeGroups is the store group (Config.Group) of each server started
	// by startIn; one harness may hold several (groups_test.go).
	storeGroups map[string]string
}

func newGroup(tb testing.TB, failover bool, edit func(*server.Config)) *group {
	g := &group{tb: tb, failover: failover, servers: map[string]*server.Server{}, dirs: map[string]string{}, edit: edit, storeGroups: map[string]string{}}
	tb.Cleanup(func() {
		// Close outside g.mu: a closing server's lease loop may still ask
		// the group for its members.
		g.mu.Lock()
		servers := g.servers
		g.servers = map[string]*server.Server{}
		g.mu.Unlock()
		for _, s := range servers {
			_ = s.Close()
		}
	})
	return g
}

// StoreNodes makes the group its own Resolver: every running server, the
// configured primary marked, each with its store group.
func (g *group) StoreNodes() []store.NodeInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []store.NodeInfo
	for name, s := range g.servers {
		out = append(out, store.NodeInfo{Name: name, Addr: s.Addr(), Primary: !g.failover && name == "p", Group: g.storeGroups[name]})
	}
	return out
}

func (g *group) start(name, role string) *server.Server {
	g.tb.Helper()
	return g.startIn(store.DefaultGroup, name, role)
}

// startIn starts a server in store group storeGroup.
func (g *group) startIn(storeGroup, name, role string) *server.Server {
	g.tb.Helper()
	g.mu.Lock()
	g.storeGroups[name] = storeGroup
	dir, ok := g.dirs[name]
	if !ok {
		dir = g.tb.TempDir()
		g.dirs[name] = dir
	}
	g.mu.Unlock()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = name
	cfg.DataDir = dir
	cfg.Role = role
	cfg.LeaseTTL = 600 * time.Millisecond
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.SyncTimeout = 5 * time.Second // generous: CI shares 2 cores
	cfg.Failover = g.failover
	cfg.Group = storeGroup
	deps := server.Deps{Peers: g, Members: g}
	cfg.HandOverOnClose = false // stop stands for a crash, unless a test's edit says otherwise
	if os.Getenv("STORE_TEST_LOG") != "" {
		deps.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	if g.edit != nil {
		g.edit(&cfg)
	}
	s, err := server.New(cfg, deps)
	if err != nil {
		g.tb.Fatalf("New(%s): %v", name, err)
	}
	if err := s.Open(); err != nil {
		g.tb.Fatalf("Open(%s): %v", name, err)
	}
	g.mu.Lock()
	g.servers[name] = s
	g.mu.Unlock()
	return s
}

// stop closes a server (its data stays for a restart).
func (g *group) stop(name string) {
	g.tb.Helper()
	g.mu.Lock()
	s := g.servers[name]
	delete(g.servers, name)
	g.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

func (g *group) server(name string) *server.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.servers[name]
}

// primary returns the name of the server that is primary now, or "".
func (g *group) primary() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, s := range g.servers {
		if replStatus(s).Role == server.RolePrimary {
			return name
		}
	}
	return ""
}

func replStatus(s *server.Server) server.ReplicationStatus {
	st := s.Status().(server.Status)
	if st.Replication == nil {
		return server.ReplicationStatus{}
	}
	return *st.Replication
}

func (g *group) client() *store.Client {
	c := store.NewClient(store.ClientConfig{Resolver: g, Timeout: 10 * time.Second})
	g.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// waitConverged waits until every named server has the checksum of the first.
func waitConverged(tb testing.TB, timeout time.Duration, servers ...*server.Server) {
	tb.Helper()
	testwait.RetryUntil(tb, timeout, func() error {
		want, wantLSN, err := servers[0].DB().Checksum(context.Background())
		if err != nil {
			return err
		}
		for _, s := range servers[1:] {
			got, lsn, err := s.DB().Checksum(context.Background())
			if err != nil {
				return err
			}
			if got != want || lsn != wantLSN {
				return fmt.Errorf("checksum %08x at LSN %d, want %08x at LSN %d", got, lsn, want, wantLSN)
			}
		}
		return nil
	})
}

func TestReplicaStreamsAndRefusesWrites(t *testing.T) {
	g := newGroup(t, false, nil)
	p := g.start("p", server.RolePrimary)
	r := g.start("r1", server.RoleReplica)
	c := g.client()
	ctx := context.Background()
	for i := range 50 {
		mustTxn(t, c, store.Put("b", fmt.Sprintf("k%02d", i), []byte(fmt.Sprint(i))), store.Put("c", "n", []byte(fmt.Sprint(i))))
	}
	waitConverged(t, 5*time.Second, p, r)
	if got, want := r.DB().LSN(), p.DB().LSN(); got != want {
		t.Fatalf("replica LSN = %d, want %d", got, want)
	}
	// A write sent straight to the replica is refused, naming the primary.
	req, _ := http.NewRequest(http.MethodPut, "http://"+r.Addr()+"/v1/kv/b/x", bytes.NewReader([]byte("v")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest || !bytes.Contains(body, []byte("write to p")) {
		t.Fatalf("PUT on replica = %d %s, want 421 naming p", resp.StatusCode, body)
	}
	if got := resp.Header.Get(store.HeaderPrimary); got != "p="+p.Addr() {
		t.Errorf("%s = %q, want %q", store.HeaderPrimary, got, "p="+p.Addr())
	}
	// Eventual reads may be served by the replica; the value is there.
	v, err := c.Get(store.WithConsistency(ctx, store.Eventual, 0), "b", "k07")
	if err != nil || string(v) != "7" {
		t.Fatalf("eventual Get = %q, %v; want 7", v, err)
	}
	st := replStatus(p)
	if len(st.Replicas) != 1 || st.Replicas[0].Node != "r1" {
		t.Fatalf("primary status replicas = %+v, want r1", st.Replicas)
	}
}

func TestSyncWithoutReplicaFailsClearly(t *testing.T) {
	g := newGroup(t, false, func(c *server.Config) { c.Sync = 1; c.SyncTimeout = 200 * time.Millisecond })
	g.start("p", server.RolePrimary)
	c := g.client()
	_, err := c.Txn(context.Background(), store.Put("b", "k", []byte("v")))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Txn with sync 1 and no replica: err = %v, want ErrUnavailable", err)
	}
	g.start("r1", server.RoleReplica)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := c.Txn(context.Background(), store.Put("b", "k", []byte("v2")))
		return err
	})
}

func TestNewReplicaBootstrapsFromSnapshot(t *testing.T) {
	g := newGroup(t, false, func(c *server.Config) { c.LogRetention = 20 })
	p := g.start("p", server.RolePrimary)
	c := g.client()
	for i := range 200 {
		mustTxn(t, c, store.Put("b", fmt.Sprintf("k%03d", i), bytes.Repeat([]byte{byte(i)}, 100)))
	}
	// Keep writing while the replica joins: it must catch up by snapshot,
	// then by stream.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Txn(context.Background(), store.Put("live", fmt.Sprint(i), []byte("x"))); err != nil {
				t.Errorf("live write: %v", err)
				return
			}
		}
	}()
	r := g.start("r1", server.RoleReplica)
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if f := replStatus(r).Following; f == nil || f.Snapshots == 0 {
			return errors.New("no snapshot installed yet")
		}
		return nil
	})
	close(stop)
	<-done
	waitConverged(t, 10*time.Second, p, r)
}

// TestFailover: the primary stops; the fresher replica takes the lease with
// a new epoch; writes resume through the same client; every acknowledged
// write is there; the old primary comes back as a replica and converges.
func TestFailover(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	c := g.client()
	ctx := context.Background()
	acked := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.Txn(ctx, store.Put("b", k, []byte(k))); err == nil {
					mu.Lock()
					acked[k] = k
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	epoch := g.server("p").DB().Epoch()
	killed := time.Now()
	g.stop("p")
	var newPrimary string
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if newPrimary = g.primary(); newPrimary == "" {
			return errors.New("no new primary")
		}
		return nil
	})
	// The first write accepted after the stop.
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := c.Txn(ctx, store.Put("b", "after", []byte("x")))
		return err
	})
	t.Logf("new primary %s, first write accepted %v after the stop", newPrimary, time.Since(killed).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	np := g.server(newPrimary)
	if got := np.DB().Epoch(); got <= epoch {
		t.Errorf("new primary epoch = %d, want > %d", got, epoch)
	}
	for k, v := range acked {
		got, err := np.DB().Get(ctx, "b", k)
		if err != nil || string(got) != v {
			t.Fatalf("acknowledged write %s: Get = %q, %v on the new primary", k, got, err)
		}
	}
	t.Logf("%d acknowledged writes, all on the new primary", len(acked))
	// The old primary returns and follows.
	old := g.start("p", server.RolePrimary)
	others := []*server.Server{np, old}
	for _, n := range []string{"r1", "r2"} {
		if n != newPrimary {
			others = append(others, g.server(n))
		}
	}
	waitConverged(t, 10*time.Second, others...)
	if st := replStatus(old); st.Role != server.RoleReplica {
		t.Fatalf("old primary role = %s, want replica", st.Role)
	}
}

// TestLaggingReplicaNotPromoted: of two replicas, the one that has applied
// less stands back while the fresher one is alive.
func TestLaggingReplicaNotPromoted(t *testing.T) {
	g := newGroup(t, true, nil)
	g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	// "a" sorts first, so it would win a tie: make it the laggard.
	lag := g.start("a", server.RoleReplica)
	g.start("z", server.RoleReplica)
	c := g.client()
	mustTxn(t, c, store.Put("b", "1", []byte("1")))
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if lag.DB().LSN() < 1 {
			return errors.New("a behind")
		}
		return nil
	})
	g.stop("a") // a misses the next writes
	for i := range 20 {
		mustTxn(t, c, store.Put("b", fmt.Sprint(i), []byte("x")))
	}
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.server("z").DB().LSN() != g.server("p").DB().LSN() {
			return errors.New("z behind")
		}
		return nil
	})
	// Restart a without a primary to catch up from: stop p first.
	g.stop("p")
	lag = g.start("a", server.RoleReplica)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() == "" {
			return errors.New("no primary")
		}
		return nil
	})
	if got := g.primary(); got != "z" {
		t.Fatalf("promoted %s, want z (the fresher replica)", got)
	}
}

// TestLeaseLossStopsWrites: a primary that cannot reach a majority of its
// group refuses writes before the lease can pass to another node, and
// writes again once the majority answers.
func TestLeaseLossStopsWrites(t *testing.T) {
	g := newGroup(t, true, nil)
	p := g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	waitVoters(t, p, 3)
	// node up's failover watcher tells a lapsed lease by heard_ms >= ttl_ms.
	if ttl := replStatus(p).Lease.TTLMS; ttl != 600 {
		t.Fatalf("lease ttl_ms = %d, want the group's 600", ttl)
	}
	mustTxn(t, p.DB(), store.Put("b", "k", []byte("v")))
	g.stop("r1")
	g.stop("r2")
	lost := time.Now()
	testwait.RetryUntil(t, 2*time.Second, func() error {
		_, err := p.DB().Txn(context.Background(), store.Put("b", "k", []byte("w")))
		if !errors.Is(err, store.ErrNotPrimary) {
			return fmt.Errorf("write err = %v, want ErrNotPrimary", err)
		}
		return nil
	})
	t.Logf("writes refused %v after both replicas stopped (TTL 600ms)", time.Since(lost).Round(time.Millisecond))
	g.start("r1", server.RoleReplica)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := p.DB().Txn(context.Background(), store.Put("b", "k", []byte("x")))
		return err
	})
	if got := g.primary(); got != "p" {
		t.Fatalf("primary after r1 came back = %q, want p (it kept its epoch)", got)
	}
}

// waitVoters waits until s counts n voters in its lease.
func waitVoters(tb testing.TB, s *server.Server, n int) {
	tb.Helper()
	testwait.RetryUntil(tb, 5*time.Second, func() error {
		st := replStatus(s)
		if st.Lease == nil || len(st.Lease.Voters) != n {
			return fmt.Errorf("lease %+v, want %d voters", st.Lease, n)
		}
		return nil
	})
}

func TestPromoteHandsOverWithoutLoss(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	r := g.start("r1", server.RoleReplica)
	c := g.client()
	for i := range 30 {
		mustTxn(t, c, store.Put("b", fmt.Sprint(i), []byte("x")))
	}
	resp, err := http.Post("http://"+r.Addr()+"/v1/promote", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("promote = %d %s", resp.StatusCode, body)
	}
	if got := g.primary(); got != "r1" {
		t.Fatalf("primary after promote = %q, want r1", got)
	}
	mustTxn(t, c, store.Put("b", "after", []byte("x")))
	waitConverged(t, 5*time.Second, g.server("r1"), g.server("p"))
}

func TestSessionReadsSeeOwnWrites(t *testing.T) {
	g := newGroup(t, false, nil)
	g.start("p", server.RolePrimary)
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	c := g.client()
	ctx := context.Background()
	for i := range 100 {
		k := fmt.Sprint(i)
		lsn := mustTxn(t, c, store.Put("b", k, []byte(k)))
		tr := &store.Trace{}
		v, err := c.Get(store.WithTrace(store.WithConsistency(ctx, store.Session, lsn), tr), "b", k)
		if err != nil || string(v) != k {
			t.Fatalf("session Get after write at LSN %d = %q, %v (node %s)", lsn, v, err, tr.Node)
		}
	}
}
