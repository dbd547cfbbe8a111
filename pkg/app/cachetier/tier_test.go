package cachetier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/store"
)

// source is a stand-in for the store: a value per key, a count of loads,
// and the consistency each load asked for.
type source struct {
	mu      sync.Mutex
	vals    map[string]string
	loads   atomic.Int64
	lastLSN atomic.Uint64
}

func newSource() *source { return &source{vals: map[string]string{}} }

func (s *source) set(k, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[k] = v
}

func (s *source) loader(k string) cachetier.Loader {
	return func(ctx context.Context) ([]byte, error) {
		s.loads.Add(1)
		if c, lsn := store.ConsistencyFrom(ctx); c == store.Session {
			s.lastLSN.Store(lsn)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		v, ok := s.vals[k]
		if !ok {
			return nil, store.ErrNotFound
		}
		return []byte(v), nil
	}
}

func fetch(tb testing.TB, t *cachetier.Tier, src *source, key string) (string, cachetier.Result) {
	tb.Helper()
	v, r, err := t.Fetch(context.Background(), key, src.loader(key))
	if err != nil {
		tb.Fatalf("Fetch(%q): %v", key, err)
	}
	return string(v), r
}

func wantFetch(tb testing.TB, t *cachetier.Tier, src *source, key, want string, wantR cachetier.Result) {
	tb.Helper()
	got, r := fetch(tb, t, src, key)
	if got != want || r != wantR {
		tb.Fatalf("Fetch(%q) = %q, %v; want %q, %v", key, got, r, want, wantR)
	}
}

func TestMissThenHit(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	tier := openTier(t, testConfig(func() []string { return []string{c.Addr()} }))
	src := newSource()
	src.set("post:1", "hello")

	wantFetch(t, tier, src, "post:1", "hello", cachetier.Miss)
	wantFetch(t, tier, src, "post:1", "hello", cachetier.Hit)
	if got := src.loads.Load(); got != 1 {
		t.Errorf("loads = %d, want 1", got)
	}
	raw, err := rawClient(t, c.Addr()).Get(context.Background(), "ss2:post:1").Result()
	if err != nil || !sealedValue(raw, "hello") {
		t.Errorf("cache holds %q, %v; want the value sealed, with its D mark", raw, err)
	}

	// A load error is returned and nothing is cached.
	_, _, err = tier.Fetch(context.Background(), "post:none", src.loader("post:none"))
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Fetch of a missing key: err = %v, want ErrNotFound", err)
	}
	if n, _ := rawClient(t, c.Addr()).Exists(context.Background(), "ss2:post:none").Result(); n != 0 {
		t.Errorf("a failed load left a cache entry")
	}

	st := tier.Stats()
	if st.Hits != 1 || st.Misses != 2 || st.Fills != 1 || len(st.Nodes) != 1 || !st.Nodes[0].Up {
		t.Errorf("Stats = %+v, want 1 hit, 2 misses, 1 fill, one node up", st)
	}
}

func TestTraceKeepsCostliest(t *testing.T) {
	var tr cachetier.Trace
	for _, r := range []cachetier.Result{cachetier.Hit, cachetier.Miss, cachetier.Hit} {
		tr.Record(r)
	}
	if got := tr.Result(); got != cachetier.Miss {
		t.Errorf("Result() = %v, want MISS", got)
	}
	tr.Record(cachetier.Bypass)
	if got := tr.Result().String(); got != "BYPASS" {
		t.Errorf("Result() = %v, want BYPASS", got)
	}
}

// After a write, the key holds a tombstone: readers load at least the
// write's LSN and do not fill; once the tombstone has expired a reader
// fills again.
func TestInvalidateLeavesTombstone(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	cfg := testConfig(func() []string { return []string{c.Addr()} })
	tier := openTier(t, cfg)
	src := newSource()
	src.set("post:1", "v1")
	wantFetch(t, tier, src, "post:1", "v1", cachetier.Miss)

	src.set("post:1", "v2")
	tier.Invalidate(context.Background(), 42, "post:1")
	raw, _ := rawClient(t, c.Addr()).Get(context.Background(), "ss2:post:1").Result()
	if !strings.HasPrefix(raw, "T42.") {
		t.Fatalf("after Invalidate the cache holds %q, want the tombstone T42 (sealed)", raw)
	}
	wantFetch(t, tier, src, "post:1", "v2", cachetier.Miss)
	if got := src.lastLSN.Load(); got < 42 {
		t.Errorf("load under a tombstone asked for LSN %d, want at least 42", got)
	}
	wantFetch(t, tier, src, "post:1", "v2", cachetier.Miss) // still the tombstone: no fill

	// Another key, never written, loads at the watermark at least.
	src.set("post:2", "other")
	wantFetch(t, tier, src, "post:2", "other", cachetier.Miss)
	if got := src.lastLSN.Load(); got < 42 {
		t.Errorf("load of an empty key asked for LSN %d, want the watermark 42", got)
	}

	testwait.Until(t, 5*time.Second, "the tombstone to expire", func() bool {
		n, _ := rawClient(t, c.Addr()).Exists(context.Background(), "ss2:post:1").Result()
		return n == 0
	})
	wantFetch(t, tier, src, "post:1", "v2", cachetier.Miss)
	wantFetch(t, tier, src, "post:1", "v2", cachetier.Hit)
	if got := tier.Stats().Invalidations; got != 1 {
		t.Errorf("Invalidations = %d, want 1", got)
	}
}

// The race the tombstone exists for: a reader misses and loads the old
// value; the write commits and invalidates; the reader then tries to fill.
// The old value must not land in the cache.
func TestSlowReaderCannotFillOverAWrite(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	tier := openTier(t, testConfig(func() []string { return []string{c.Addr()} }))

	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the tier closes, on a failure
	slowOld := func(ctx context.Context) ([]byte, error) {
		close(started)
		<-release
		return []byte("old"), nil
	}
	done := make(chan string, 1)
	go func() {
		v, _, err := tier.Fetch(context.Background(), "post:1", slowOld)
		if err != nil {
			t.Errorf("slow Fetch: %v", err)
		}
		done <- string(v)
	}()
	<-started
	tier.Invalidate(context.Background(), 7, "post:1") // the write commits meanwhile
	once.Do(func() { close(release) })
	if got := <-done; got != "old" {
		t.Fatalf("slow reader got %q, want old (it began before the write)", got)
	}

	src := newSource()
	src.set("post:1", "new")
	wantFetch(t, tier, src, "post:1", "new", cachetier.Miss)
	raw, _ := rawClient(t, c.Addr()).Get(context.Background(), "ss2:post:1").Result()
	if !strings.HasPrefix(raw, "T7.") {
		t.Errorf("cache holds %q after the slow reader's fill, want the tombstone T7 (sealed)", raw)
	}
}

// The same race with a reader so slow that the write's tombstone has
// expired by the time it tries to fill: the fill window stops it.
func TestSlowReaderOutlivesTombstone(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	tier := openTier(t, testConfig(func() []string { return []string{c.Addr()} }))
	rdb := rawClient(t, c.Addr())

	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the tier closes, on a failure
	slowOld := func(ctx context.Context) ([]byte, error) {
		close(started)
		<-release
		return []byte("old"), nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, _, err := tier.Fetch(context.Background(), "post:1", slowOld); err != nil {
			t.Errorf("slow Fetch: %v", err)
		}
	}()
	<-started
	tier.Invalidate(context.Background(), 7, "post:1")
	testwait.Until(t, 5*time.Second, "the tombstone to expire", func() bool {
		n, _ := rdb.Exists(context.Background(), "ss2:post:1").Result()
		return n == 0
	})
	once.Do(func() { close(release) })
	<-done
	if raw, err := rdb.Get(context.Background(), "ss2:post:1").Result(); err == nil {
		t.Errorf("a reader that started before the write filled %q after its tombstone expired", raw)
	}
}

// A load that takes longer than the fill window is served but not cached:
// a write made after it began may have come and its tombstone gone.
func TestSlowLoadIsNotFilled(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	cfg := testConfig(func() []string { return []string{c.Addr()} })
	tier := openTier(t, cfg)
	window := cfg.TombstoneTTL/2 - cfg.Timeout
	slow := func(ctx context.Context) ([]byte, error) {
		time.Sleep(window + 50*time.Millisecond) // the load itself is what is slow
		return []byte("v"), nil
	}
	v, r, err := tier.Fetch(context.Background(), "post:slow", slow)
	if err != nil || string(v) != "v" || r != cachetier.Miss {
		t.Fatalf("Fetch = %q, %v, %v; want v, MISS", v, r, err)
	}
	if n, _ := rawClient(t, c.Addr()).Exists(context.Background(), "ss2:post:slow").Result(); n != 0 {
		t.Errorf("a load slower than the fill window was cached")
	}
}

// Readers of a hot key that arrive while it is being loaded share one load.
func TestOneLoadPerKey(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	cfg := testConfig(func() []string { return []string{c.Addr()} })
	// Generous: a reader whose lookup times out bypasses, and loads apart.
	cfg.Timeout, cfg.TombstoneTTL = 2*time.Second, 10*time.Second
	tier := openTier(t, cfg)
	const readers = 32
	gate := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	var loads atomic.Int64
	load := func(ctx context.Context) ([]byte, error) {
		loads.Add(1)
		<-gate
		return []byte("hot"), nil
	}
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			v, _, err := tier.Fetch(context.Background(), "post:hot", load)
			if err != nil || string(v) != "hot" {
				t.Errorf("Fetch = %q, %v", v, err)
			}
		})
	}
	// Every reader has looked at the cache (and missed) before the load may end.
	testwait.Until(t, 10*time.Second, "every reader to miss", func() bool {
		st := tier.Stats()
		return st.Misses+st.Bypasses == readers
	})
	once.Do(func() { close(gate) })
	wg.Wait()
	want := int64(1)
	if tier.Stats().Bypasses > 0 {
		want = 2 // the readers whose lookup failed share a load of their own
	}
	if got := loads.Load(); got != want {
		t.Errorf("%d readers caused %d loads, want %d", readers, got, want)
	}
}

// With every cache node down, lookups go to the store (BYPASS), and once
// the breaker is open they stop trying the node at all.
func TestAllNodesDownBypass(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	addr := c.Addr()
	c.Close()
	cfg := testConfig(func() []string { return []string{addr} })
	cfg.Cooldown = time.Hour // no probe during the test
	tier := openTier(t, cfg)
	src := newSource()
	src.set("post:1", "from the store")
	for i := 0; i < 20; i++ {
		wantFetch(t, tier, src, "post:1", "from the store", cachetier.Bypass)
	}
	st := tier.Stats()
	if st.Errors != uint64(cfg.FailureThreshold) {
		t.Errorf("Errors = %d after 20 lookups, want %d: an open breaker must stop calls to the node", st.Errors, cfg.FailureThreshold)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Up {
		t.Errorf("Nodes = %+v, want the node down", st.Nodes)
	}
	// Writes still succeed; the node is owed the invalidation.
	tier.Invalidate(context.Background(), 3, "post:1")
	if got := tier.Stats().Nodes[0].Pending; got != 1 {
		t.Errorf("Pending = %d, want 1", got)
	}

	// No nodes at all is the same.
	empty := openTier(t, testConfig(nil))
	wantFetch(t, empty, src, "post:1", "from the store", cachetier.Bypass)
}

// A node cut off from this app while it keeps its data: invalidations it
// missed are replayed before it serves again, so it never serves the old value.
func TestPartitionedNodeGetsMissedInvalidations(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	p := startProxy(t, "127.0.0.1:0", c.Addr())
	tier := openTier(t, testConfig(func() []string { return []string{p.Addr()} }))
	src := newSource()
	src.set("post:1", "old")
	wantFetch(t, tier, src, "post:1", "old", cachetier.Miss)
	wantFetch(t, tier, src, "post:1", "old", cachetier.Hit)

	p.cut()
	src.set("post:1", "new")
	tier.Invalidate(context.Background(), 9, "post:1")
	if st := tier.Stats(); st.Nodes[0].Up || st.Nodes[0].Pending != 1 {
		t.Fatalf("after a missed invalidation Nodes = %+v, want the node down with 1 pending", st.Nodes)
	}
	wantFetch(t, tier, src, "post:1", "new", cachetier.Bypass)
	if raw, _ := rawClient(t, c.Addr()).Get(context.Background(), "ss2:post:1").Result(); !sealedValue(raw, "old") {
		t.Fatalf("the cut-off node holds %q, want the old value still (the test's premise)", raw)
	}

	p.heal()
	testwait.Until(t, 10*time.Second, "the node to rejoin", func() bool { return tier.Stats().Nodes[0].Up })
	got, _ := fetch(t, tier, src, "post:1")
	if got != "new" {
		t.Fatalf("after the node rejoined Fetch = %q, want new", got)
	}
	if raw, _ := rawClient(t, c.Addr()).Get(context.Background(), "ss2:post:1").Result(); sealedValue(raw, "old") {
		t.Errorf("the rejoined node still holds the old value")
	}
}

// Past MaxPending missed invalidations, a returning node is flushed.
func TestTooManyMissedFlushes(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	p := startProxy(t, "127.0.0.1:0", c.Addr())
	cfg := testConfig(func() []string { return []string{p.Addr()} })
	cfg.MaxPending = 2
	tier := openTier(t, cfg)
	src := newSource()
	for i := range 5 {
		src.set(fmt.Sprint("post:", i), "old")
		wantFetch(t, tier, src, fmt.Sprint("post:", i), "old", cachetier.Miss)
	}
	p.cut()
	tier.Invalidate(context.Background(), 10, "post:0", "post:1", "post:2")
	p.heal()
	testwait.Until(t, 10*time.Second, "the node to rejoin", func() bool { return tier.Stats().Nodes[0].Up })
	if n, _ := rawClient(t, c.Addr()).DBSize(context.Background()).Result(); n > 1 {
		t.Errorf("after an overflow the returning node holds %d keys, want it flushed", n)
	}
}

// The ring follows the node set: keys spread over the nodes, and when one
// leaves its keys move to the others.
func TestRingFollowsNodes(t *testing.T) {
	a := startCache(t, "127.0.0.1:0")
	b := startCache(t, "127.0.0.1:0")
	var set nodeSet
	set.set(a.Addr(), b.Addr())
	tier := openTier(t, testConfig(set.get))
	src := newSource()
	const n = 200
	for i := range n {
		k := fmt.Sprint("post:", i)
		src.set(k, "v")
		wantFetch(t, tier, src, k, "v", cachetier.Miss)
	}
	ctx := context.Background()
	na, _ := rawClient(t, a.Addr()).DBSize(ctx).Result()
	nb, _ := rawClient(t, b.Addr()).DBSize(ctx).Result()
	// Each node also holds the watermark key once a write has happened; none has yet.
	if na+nb != n || na < n/4 || nb < n/4 {
		t.Errorf("keys per node = %d and %d, want %d spread over both", na, nb, n)
	}

	set.set(a.Addr())
	testwait.Until(t, 5*time.Second, "the ring to drop a node", func() bool { return len(tier.Stats().Nodes) == 1 })
	hits := 0
	for i := range n {
		if _, r := fetch(t, tier, src, fmt.Sprint("post:", i)); r == cachetier.Hit {
			hits++
		}
	}
	if hits != int(na) {
		t.Errorf("after removing a node %d keys hit, want the %d that were on the remaining node", hits, na)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*cachetier.Config)
		want string
	}{
		{"prefix", func(c *cachetier.Config) { c.Prefix = "" }, "Prefix"},
		{"short MAC key", func(c *cachetier.Config) { c.MACKey = []byte("short") }, "MACKey"},
		{"timeout", func(c *cachetier.Config) { c.Timeout = 0 }, "Timeout"},
		{"tombstone too short", func(c *cachetier.Config) { c.TombstoneTTL = 4 * c.Timeout }, "TombstoneTTL"},
		{"tombstone past ttl", func(c *cachetier.Config) { c.TTL = time.Second; c.TombstoneTTL = 2 * time.Second }, "TombstoneTTL"},
		{"threshold", func(c *cachetier.Config) { c.FailureThreshold = 0 }, "FailureThreshold"},
		{"pending", func(c *cachetier.Config) { c.MaxPending = 0 }, "MaxPending"},
	}
	for _, tt := range tests {
		cfg := cachetier.DefaultConfig()
		tt.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
	cfg := cachetier.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}
