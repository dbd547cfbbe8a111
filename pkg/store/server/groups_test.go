package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// hostLog is a RoundTripper that records every host:port a client sends a
// request to.
type hostLog struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (h *hostLog) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	if h.hosts == nil {
		h.hosts = map[string]int{}
	}
	h.hosts[req.URL.Host]++
	h.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (h *hostLog) seen() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.hosts {
		out[k] = v
	}
	return out
}

// groupClient returns a client of storeGroup over the whole cluster's
// membership, recording where it sends requests.
func groupClient(tb testing.TB, g *group, storeGroup string) (*store.Client, *hostLog) {
	tb.Helper()
	log := &hostLog{}
	c := store.NewClient(store.ClientConfig{Resolver: g, Group: storeGroup, Timeout: 10 * time.Second, HTTPClient: &http.Client{Transport: log}})
	tb.Cleanup(func() { _ = c.Close() })
	return c, log
}

// primaryOf returns the server of storeGroup that is primary now, or "".
func (g *group) primaryOf(storeGroup string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, s := range g.servers {
		if g.storeGroups[name] == storeGroup && replStatus(s).Role == server.RolePrimary {
			return name
		}
	}
	return ""
}

func voterNames(s *server.Server) []string {
	st := replStatus(s)
	if st.Lease == nil {
		return nil
	}
	var names []string
	for n := range st.Lease.Voters {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestTwoGroupsOneCluster: two store groups share one membership (the
// resolver lists all five nodes). Each elects its own primary with its own
// voters; a write in one is not in the other; a client of one never sends
// a request to the other's nodes; killing one group's primary fails that
// group over while the other's primary keeps its lease and epoch.
func TestTwoGroupsOneCluster(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	const a, b = "content", "users"
	g.startIn(a, "a1", server.RolePrimary)
	g.startIn(b, "b1", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if pa, pb := g.primaryOf(a), g.primaryOf(b); pa != "a1" || pb != "b1" {
			return fmt.Errorf("primaries %q and %q, want a1 and b1", pa, pb)
		}
		return nil
	})
	g.startIn(a, "a2", server.RoleReplica)
	g.startIn(a, "a3", server.RoleReplica)
	g.startIn(b, "b2", server.RoleReplica)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if got, want := voterNames(g.server("a1")), []string{"a1", "a2", "a3"}; !slices.Equal(got, want) {
			return fmt.Errorf("voters of a1 = %v, want %v", got, want)
		}
		if got, want := voterNames(g.server("b1")), []string{"b1", "b2"}; !slices.Equal(got, want) {
			return fmt.Errorf("voters of b1 = %v, want %v", got, want)
		}
		return nil
	})
	if st := replStatus(g.server("a2")); st.Group != a {
		t.Errorf("a2 status group = %q, want %q", st.Group, a)
	}

	ca, logA := groupClient(t, g, a)
	cb, logB := groupClient(t, g, b)
	ctx := context.Background()
	strong := store.WithConsistency(ctx, store.Strong, 0)
	mustTxn(t, ca, store.Put("posts", "1", []byte("in content")))
	mustTxn(t, cb, store.Put("accounts", "1", []byte("in users")))
	if v, err := cb.Get(strong, "posts", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("users client Get(posts/1) = %q, %v; want not found (written in content)", v, err)
	}
	if v, err := ca.Get(strong, "accounts", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("content client Get(accounts/1) = %q, %v; want not found (written in users)", v, err)
	}
	for _, name := range []string{"b1", "b2"} {
		if _, err := g.server(name).DB().Get(ctx, "posts", "1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s has content's posts/1 (err %v), want not found", name, err)
		}
	}
	waitConverged(t, 5*time.Second, g.server("a1"), g.server("a2"), g.server("a3"))
	waitConverged(t, 5*time.Second, g.server("b1"), g.server("b2"))

	// Writers in both groups while content's primary dies.
	epochB := g.server("b1").DB().Epoch()
	epochA := g.server("a1").DB().Epoch()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	ackedB, failedB := 0, 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := cb.Txn(ctx, store.Put("accounts", fmt.Sprint("w", i), []byte("x")))
			mu.Lock()
			if err == nil {
				ackedB++
			} else {
				failedB++
			}
			mu.Unlock()
		}
	}()
	g.stop("a1")
	var newA string
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if newA = g.primaryOf(a); newA == "" {
			return errors.New("content has no new primary")
		}
		return nil
	})
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := ca.Txn(ctx, store.Put("posts", "2", []byte("after failover")))
		return err
	})
	close(stop)
	wg.Wait()
	if got := g.server(newA).DB().Epoch(); got <= epochA {
		t.Errorf("content's new primary %s at epoch %d, want > %d", newA, got, epochA)
	}
	if got := g.primaryOf(b); got != "b1" {
		t.Errorf("users' primary after content's failover = %q, want b1", got)
	}
	if got := g.server("b1").DB().Epoch(); got != epochB {
		t.Errorf("users' epoch went from %d to %d during content's failover, want unchanged", epochB, got)
	}
	mu.Lock()
	if ackedB == 0 || failedB > 0 {
		t.Errorf("users' writes during content's failover: %d acknowledged, %d failed; want all acknowledged", ackedB, failedB)
	}
	mu.Unlock()
	if v, err := ca.Get(strong, "posts", "1"); err != nil || string(v) != "in content" {
		t.Errorf("content Get(posts/1) after failover = %q, %v; want the write before it", v, err)
	}

	// Neither client ever sent a request to the other group's nodes.
	addrs := map[string]string{}
	for _, n := range g.StoreNodes() {
		addrs[n.Addr] = n.Group
	}
	for _, tc := range []struct {
		group string
		log   *hostLog
	}{{a, logA}, {b, logB}} {
		seen := tc.log.seen()
		if len(seen) == 0 {
			t.Fatalf("client of %s sent nothing", tc.group)
		}
		for host := range seen {
			if grp, ok := addrs[host]; ok && grp != tc.group {
				t.Errorf("client of %s sent %d requests to %s, a node of %s", tc.group, seen[host], host, grp)
			}
		}
	}
}

// A request that names another group is refused before anything is
// applied, whether it comes from a client or from a store node of that
// group (a lease message): the groups never mix data or votes.
func TestRequestOfAnotherGroupRefused(t *testing.T) {
	g := newGroup(t, true, nil)
	s := g.startIn("users", "b1", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primaryOf("users") != "b1" {
			return errors.New("b1 not primary yet")
		}
		return nil
	})
	for _, tc := range []struct {
		method, path, body string
	}{
		{http.MethodPut, "/v1/kv/posts/1", "x"},
		{http.MethodPost, "/v1/lease", `{"op":"prevote","epoch":99,"node":"a1","addr":"127.0.0.1:1"}`},
		{http.MethodGet, "/v1/replicate?from=1&epoch=1&node=a2", ""},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+s.Addr()+tc.path, strings.NewReader(tc.body))
		req.Header.Set(store.HeaderGroup, "content")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s naming group content on a users node = %d, want 400", tc.method, tc.path, resp.StatusCode)
		}
		if got := resp.Header.Get(store.HeaderGroup); got != "users" {
			t.Errorf("%s %s: %s = %q, want users", tc.method, tc.path, store.HeaderGroup, got)
		}
	}
	if _, err := s.DB().Get(context.Background(), "posts", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("posts/1 after a refused write of another group: err %v, want not found", err)
	}
	// A request naming its own group is served.
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.Addr()+"/v1/kv/posts/1", strings.NewReader("x"))
	req.Header.Set(store.HeaderGroup, "users")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT naming its own group = %d, want 200", resp.StatusCode)
	}
}

// A session read of a client of one group waits for that group's LSN
// only: the default group's LSN, far ahead, means nothing to content's
// replicas, which serve the read (had the client compared it, every
// replica would have refused and the primary answered).
func TestSessionReadComparesWithinGroup(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	g.startIn("content", "a1", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primaryOf("content") != "a1" {
			return errors.New("a1 not primary yet")
		}
		return nil
	})
	g.startIn("content", "a2", server.RoleReplica)
	waitVoters(t, g.server("a1"), 2)
	c, _ := groupClient(t, g, "content")
	lsn := mustTxn(t, c, store.Put("posts", "1", []byte("v")))
	waitConverged(t, 5*time.Second, g.server("a1"), g.server("a2"))

	ask := func(lsns store.LSNs) string {
		t.Helper()
		tr := &store.Trace{}
		ctx := store.WithTrace(store.WithConsistencyLSNs(context.Background(), store.Session, lsns), tr)
		if v, err := c.Get(ctx, "posts", "1"); err != nil || string(v) != "v" {
			t.Fatalf("session Get with %v = %q, %v; want v", lsns, v, err)
		}
		if _, seen := tr.Seen(); seen.Get("content") < lsn || seen.Get(store.DefaultGroup) != 0 {
			t.Errorf("trace after a content read = %v, want content's LSN only (at least %d)", seen, lsn)
		}
		return tr.Node
	}
	if got := ask(store.LSNs{store.DefaultGroup: lsn + 1_000_000, "content": lsn}); got != "a2" {
		t.Errorf("session read at content=%d (default far ahead) served by %s, want the replica a2", lsn, got)
	}
	if got := ask(store.LSNs{"content": lsn + 1_000_000}); got != "a1" {
		t.Errorf("session read at content=%d (ahead of every node) served by %s, want the primary a1", lsn+1_000_000, got)
	}
}
