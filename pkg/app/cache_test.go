package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/cache"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// startCache starts a real cache node on addr (port 0: a free one) and
// closes it when the test ends (closing twice is harmless).
func startCache(tb testing.TB, addr string) *cache.Server {
	tb.Helper()
	cfg := cache.DefaultConfig()
	cfg.Addr = addr
	cfg.MaxBytes, cfg.Shards = 16<<20, 4
	cfg.ExpireInterval = 10 * time.Millisecond
	srv, err := cache.New(cfg, cache.Deps{})
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	if err := srv.Open(); err != nil {
		tb.Fatalf("cache Open: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}

// cacheNodes is a fixed set of cache addresses, as membership would list them.
func cacheNodes(srvs ...*cache.Server) func() []string {
	addrs := make([]string, len(srvs))
	for i, s := range srvs {
		addrs[i] = s.Addr()
	}
	return func() []string { return addrs }
}

// newCacheStack opens an app with the cache tier on over st, on its own
// listener on addr (the tier runs between Open and Close), with timings
// short enough for tests and loose enough for -race on a busy machine.
func newCacheStack(tb testing.TB, addr string, st store.Store, nodes func() []string, edit ...func(*app.Config, *app.Deps)) *stack {
	tb.Helper()
	cfg := app.DefaultConfig()
	deps := app.Deps{Store: st, CacheNodes: nodes}
	cfg.Addr, cfg.NodeName = addr, "app-"+addr
	cfg.DataDir = tb.TempDir()
	cfg.BcryptCost = 4
	cfg.Cache = "on"
	cfg.CacheTier.Timeout = 200 * time.Millisecond
	cfg.CacheTier.TombstoneTTL = 1200 * time.Millisecond
	cfg.CacheTier.Cooldown = 30 * time.Millisecond
	cfg.CacheTier.RefreshInterval = 20 * time.Millisecond
	for _, e := range edit {
		e(&cfg, &deps)
	}
	a, err := app.New(cfg, deps)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	if err := a.Open(); err != nil {
		tb.Fatalf("app Open: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return &stack{App: a, URL: "http://" + a.Addr(), Store: st, Outbox: filepath.Join(cfg.DataDir, "outbox")}
}

func wantCache(tb testing.TB, what string, r response, want string) {
	tb.Helper()
	if got := r.Header.Get("X-App-Cache"); got != want {
		tb.Fatalf("%s: X-App-Cache = %q, want %q (status %d)", what, got, want, r.Code)
	}
}

func cacheStatus(tb testing.TB, s *stack) app.Status {
	tb.Helper()
	st := s.App.Status().(app.Status)
	if st.CacheTier == nil {
		tb.Fatalf("Status has no cache_tier with the cache on")
	}
	return st
}

func postTitle(tb testing.TB, r response) string {
	tb.Helper()
	return r.JSON(tb)["post"].(map[string]any)["title"].(string)
}

// Cache-aside: the first read of each page misses and fills, the next hits.
func TestCacheAsideHitAndMiss(t *testing.T) {
	c1 := startCache(t, "127.0.0.1:0")
	s := newCacheStack(t, "127.0.0.1:0", openDB(t), cacheNodes(c1))
	author := s.client(t)
	author.signup("cora")
	id := author.post("Cached post", "Served from *memory*.", "cache")["id"].(string)

	reader := s.client(t)
	// Creating the post left tombstones on the feeds it joined: until they
	// expire, feed pages are read from the store and not filled.
	wantCache(t, "home just after a post", reader.get("/"), "MISS")
	wantCache(t, "home just after a post, again", reader.get("/"), "MISS")
	testwait.Until(t, 10*time.Second, "the home page to be cached", func() bool {
		return reader.get("/").Header.Get("X-App-Cache") == "HIT"
	})
	wantCache(t, "first post page", reader.get("/p/"+id), "MISS")
	// Pages share keys (the post page fills the post the API reads), so
	// the first read of each may hit already; the second always does.
	for _, path := range []string{"/p/" + id, "/api/v1/posts/" + id, "/api/v1/posts", "/t/cache", "/u/cora",
		"/api/v1/posts/" + id + "/comments", "/api/v1/tags/cache", "/api/v1/users/cora"} {
		r := reader.get(path)
		want(t, path, r, http.StatusOK)
		if got := r.Header.Get("X-App-Cache"); got != "MISS" && got != "HIT" {
			t.Fatalf("first %s: X-App-Cache = %q, want MISS or HIT", path, got)
		}
		r = reader.get(path)
		want(t, path, r, http.StatusOK)
		wantCache(t, "second "+path, r, "HIT")
	}
	// A hit serves the same page as the store did.
	home := reader.get("/")
	wantIn(t, "home from the cache", home, "Cached post")
	wantIn(t, "home from the cache", home, "/p/"+id)
	if got := home.Header.Get("Surrogate-Key"); !strings.Contains(got, "post-"+id) {
		t.Errorf("Surrogate-Key on a fragment hit = %q, want post-%s in it", got, id)
	}
	// The author, logged in, sees the same list in their own page frame.
	wantCache(t, "home for the author", author.get("/"), "HIT")
	wantIn(t, "home for the author", author.get("/"), "Log out")

	// Pages that read nothing cached say nothing.
	if got := reader.get("/login").Header.Get("X-App-Cache"); got != "" {
		t.Errorf("login page X-App-Cache = %q, want none", got)
	}
	// Feed pages past the cached ones go to the store.
	r := reader.get("/?page=6")
	want(t, "page 6", r, http.StatusOK)
	wantCache(t, "page 6 (not cached)", r, "BYPASS")

	st := cacheStatus(t, s)
	if st.Cache != "on" || st.CacheTier.Hits == 0 || st.CacheTier.Misses == 0 || st.CacheTier.Errors != 0 {
		t.Errorf("Status = %+v, %+v; want hits, misses and no errors", st, *st.CacheTier)
	}
}

// Every write invalidates what it changed: edits, deletes and comments
// show at once, before and after their tombstones expire.
func TestCacheInvalidationOnWrites(t *testing.T) {
	c1, c2 := startCache(t, "127.0.0.1:0"), startCache(t, "127.0.0.1:0")
	s := newCacheStack(t, "127.0.0.1:0", openDB(t), cacheNodes(c1, c2))
	author := s.client(t)
	author.signup("edna")
	id := author.post("First title", "Body one.", "news")["id"].(string)
	other := author.post("Other post", "Body two.", "news")["id"].(string)
	reader := s.client(t)
	warm := func() {
		t.Helper()
		for _, p := range []string{"/", "/p/" + id, "/t/news", "/u/edna", "/api/v1/posts/" + id} {
			reader.get(p)
		}
	}
	// eventually waits until path is served from a refilled cache, then
	// checks it once more.
	eventually := func(path string, check func(response) bool) {
		t.Helper()
		testwait.Until(t, 10*time.Second, path+" to be cached again", func() bool {
			r := reader.get(path)
			if !check(r) {
				t.Fatalf("%s shows stale content: %.300s", path, r.Body)
			}
			return r.Header.Get("X-App-Cache") == "HIT"
		})
	}
	has := func(s string) func(response) bool {
		return func(r response) bool { return strings.Contains(string(r.Body), s) }
	}
	hasNot := func(s string) func(response) bool {
		return func(r response) bool { return !strings.Contains(string(r.Body), s) }
	}

	// Edit.
	warm()
	want(t, "edit", author.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "Second title", "tags": []string{"news", "extra"}}), http.StatusOK)
	for _, p := range []string{"/", "/p/" + id, "/t/news", "/u/edna", "/t/extra"} {
		r := reader.get(p)
		wantIn(t, p+" after the edit", r, "Second title")
		if strings.Contains(string(r.Body), "First title") {
			t.Fatalf("%s after the edit still shows the old title", p)
		}
	}
	if got := postTitle(t, reader.get("/api/v1/posts/"+id)); got != "Second title" {
		t.Fatalf("API after the edit: title %q", got)
	}
	eventually("/", has("Second title"))
	eventually("/p/"+id, has("Second title"))

	// Comment: the comment list and the count on the post's card.
	warm()
	want(t, "comment", reader.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "x"}), http.StatusUnauthorized)
	commenter := s.client(t)
	commenter.signup("carl")
	want(t, "comment", commenter.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "Nice cache."}), http.StatusCreated)
	wantIn(t, "post page after a comment", reader.get("/p/"+id), "Nice cache.")
	wantIn(t, "home after a comment", reader.get("/"), "1 comment")
	var cs struct{ Comments []map[string]any }
	if err := json.Unmarshal(reader.get("/api/v1/posts/"+id+"/comments").Body, &cs); err != nil || len(cs.Comments) != 1 {
		t.Fatalf("comments after a comment = %+v, %v", cs, err)
	}
	eventually("/p/"+id, has("Nice cache."))

	// Unpublish takes it off the feeds.
	warm()
	want(t, "unpublish", author.json("PUT", "/api/v1/posts/"+id, map[string]any{"published": false}), http.StatusOK)
	for _, p := range []string{"/", "/t/news", "/u/edna"} {
		if strings.Contains(string(reader.get(p).Body), "Second title") {
			t.Fatalf("%s still lists the unpublished post", p)
		}
	}
	want(t, "unpublished post for a reader", reader.get("/p/"+id), http.StatusNotFound)
	want(t, "republish", author.json("PUT", "/api/v1/posts/"+id, map[string]any{"published": true}), http.StatusOK)

	// Delete.
	warm()
	want(t, "delete", author.json("DELETE", "/api/v1/posts/"+id, nil), http.StatusNoContent)
	want(t, "deleted post", reader.get("/p/"+id), http.StatusNotFound)
	want(t, "deleted post API", reader.get("/api/v1/posts/"+id), http.StatusNotFound)
	for _, p := range []string{"/", "/t/news", "/u/edna"} {
		r := reader.get(p)
		if strings.Contains(string(r.Body), "Second title") {
			t.Fatalf("%s still lists the deleted post", p)
		}
		wantIn(t, p+" after the delete", r, "Other post")
	}
	eventually("/", hasNot("Second title"))
	_ = other
}

// noViews runs jobs inline except view counting, whose writes would make
// a read a write.
type noViews struct{ h *app.Handlers }

func (n *noViews) Enqueue(ctx context.Context, j app.Job) error {
	if j.Kind == app.JobView {
		return nil
	}
	return n.h.Handle(ctx, j)
}

// laggingStore is a boltdb.DB read through a simulated replica: each write
// reaches the replica lag after it commits, and a read waits up to
// readDelay after it has read (a slow reader, holding its value), one in
// 32 for stall or more. As the store client does, a Session read the
// replica cannot serve (it has not applied the LSN asked for) and a Strong
// read go to the primary. Only posts.byid is versioned and delayed; other
// buckets read the primary.
type laggingStore struct {
	db        *boltdb.DB
	lag       time.Duration
	readDelay time.Duration
	stall     time.Duration

	mu       sync.Mutex
	commits  []commitAt
	versions map[string][]version
	n        uint64 // a cheap pseudo-random sequence for delays
}

type commitAt struct {
	lsn uint64
	at  time.Time
}

type version struct {
	lsn uint64
	val []byte // nil: deleted
}

const postsBucket = "posts.byid"

func (l *laggingStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := l.db.Txn(ctx, ops...)
	if err != nil {
		return lsn, err
	}
	l.mu.Lock()
	l.commits = append(l.commits, commitAt{lsn, time.Now()})
	for _, op := range ops {
		if op.Bucket != postsBucket || op.Kind == store.OpCheck {
			continue
		}
		var v []byte
		if op.Kind == store.OpPut {
			v = op.Value
		}
		l.versions[op.Key] = append(l.versions[op.Key], version{lsn, v})
	}
	l.mu.Unlock()
	if tr := store.TraceFrom(ctx); tr != nil {
		tr.Record("primary", lsn)
	}
	return lsn, nil
}

// replicaLSN is the LSN the replica has applied by now.
func (l *laggingStore) replicaLSN(now time.Time) (applied uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.commits {
		if !c.at.Add(l.lag).After(now) {
			applied = c.lsn
		}
	}
	return applied
}

func (l *laggingStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	c, minLSN := store.ConsistencyFrom(ctx)
	applied := l.replicaLSN(time.Now())
	if bucket != postsBucket {
		v, err := l.db.Get(ctx, bucket, key)
		if tr := store.TraceFrom(ctx); tr != nil {
			tr.Record("primary", l.db.LSN())
		}
		return v, err
	}
	node := "replica"
	if c == store.Strong || (c == store.Session && applied < minLSN) {
		node, applied = "primary", l.db.LSN()
	}
	l.mu.Lock()
	var val []byte
	found := false
	for _, v := range l.versions[key] {
		if v.lsn <= applied {
			val, found = v.val, v.val != nil
		}
	}
	l.n = l.n*6364136223846793005 + 1442695040888963407
	r := l.n >> 33
	delay := time.Duration(r % uint64(l.readDelay+1))
	if r%32 == 0 {
		// Now and then a reader stalls for longer than a tombstone lives.
		delay = l.stall + time.Duration(r%uint64(l.stall/4))
	}
	l.mu.Unlock()
	time.Sleep(delay) // the slow reader holds the value it read
	if tr := store.TraceFrom(ctx); tr != nil {
		tr.Record(node, applied)
	}
	if !found {
		return nil, store.ErrNotFound
	}
	return val, nil
}

func (l *laggingStore) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	p, err := l.db.Scan(ctx, bucket, opts)
	if tr := store.TraceFrom(ctx); tr != nil {
		tr.Record("primary", l.db.LSN())
	}
	return p, err
}

// The invalidation race: a post is edited again and again while many
// readers read it through replicas that lag a second behind, and hold what
// they read for a while (now and then for longer than a tombstone lives)
// before they fill the cache with it. Checks: no read that starts after
// an edit is acknowledged returns an older version (no edit is undone for
// anyone), and once the edits stop, every read returns the last edit and
// no cache node holds anything older.
func TestCacheInvalidationRace(t *testing.T) {
	c1, c2 := startCache(t, "127.0.0.1:0"), startCache(t, "127.0.0.1:0")
	ls := &laggingStore{db: openDB(t), lag: time.Second, readDelay: 40 * time.Millisecond, stall: 700 * time.Millisecond,
		versions: map[string][]version{}}
	jobs := &noViews{}
	s := newCacheStack(t, "127.0.0.1:0", ls, cacheNodes(c1, c2), func(c *app.Config, d *app.Deps) {
		d.JobQueue = jobs
		c.CacheTier.Timeout = 100 * time.Millisecond
		c.CacheTier.TombstoneTTL = 600 * time.Millisecond
		// Reads go to the replicas (anonymous readers: any replica; the
		// author: one that has their last write).
		c.Reads = "replicas"
	})
	jobs.h = s.App.JobHandlers()

	author := s.client(t)
	author.signup("race")
	id := author.post("v0", "The body does not change.")["id"].(string)
	readURL := s.URL + "/api/v1/posts/" + id
	read := func() (version int, ok bool) {
		req, _ := http.NewRequest(http.MethodGet, readURL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("read: %v", err)
			return 0, false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return 0, false
		}
		var out struct{ Post struct{ Title string } }
		if err := json.Unmarshal(body, &out); err != nil {
			t.Errorf("decode %q: %v", body, err)
			return 0, false
		}
		fmt.Sscanf(out.Post.Title, "v%d", &version)
		return version, true
	}
	testwait.Until(t, 10*time.Second, "the post to reach the replica", func() bool { _, ok := read(); return ok })

	type observation struct {
		start   time.Time
		version int
	}
	var (
		mu    sync.Mutex
		seen  []observation
		acked = map[int]time.Time{}
	)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 8 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if v, ok := read(); ok {
					mu.Lock()
					seen = append(seen, observation{start, v})
					mu.Unlock()
				}
			}
		})
	}
	const edits = 10
	for k := 1; k <= edits; k++ {
		want(t, "edit", author.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": fmt.Sprintf("v%d", k)}), http.StatusOK)
		mu.Lock()
		acked[k] = time.Now()
		mu.Unlock()
		if k%2 == 0 {
			// Let tombstones expire between some edits, so readers fill
			// from the lagging replicas in between.
			time.Sleep(700 * time.Millisecond)
		}
	}
	// Keep reading while the replicas catch up and the cache refills.
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	readers.Wait()

	mu.Lock()
	defer mu.Unlock()
	undone := 0
	for _, o := range seen {
		for k := edits; k > o.version; k-- {
			if o.start.After(acked[k]) {
				if undone < 5 {
					t.Errorf("a read started %v after edit v%d was acknowledged returned v%d", o.start.Sub(acked[k]), k, o.version)
				}
				undone++
				break
			}
		}
	}
	if undone > 0 {
		t.Fatalf("%d of %d reads returned an edit undone", undone, len(seen))
	}
	t.Logf("%d reads during %d edits; cache: %+v", len(seen), edits, *cacheStatus(t, s).CacheTier)

	// After the edits: every read returns the last one, from the cache.
	testwait.Until(t, 10*time.Second, "the post to be served from the cache", func() bool {
		v, _ := read()
		if v != edits {
			t.Fatalf("after the edits a read returned v%d, want v%d", v, edits)
		}
		r := s.client(t).get("/api/v1/posts/" + id)
		return r.Header.Get("X-App-Cache") == "HIT"
	})
	for _, c := range []*cache.Server{c1, c2} {
		rdb := redis.NewClient(&redis.Options{Addr: c.Addr(), Protocol: 2, DisableIdentity: true})
		raw, err := rdb.Get(context.Background(), "ss2:post:"+id).Result()
		rdb.Close()
		if err == redis.Nil || strings.HasPrefix(raw, "T") {
			continue
		}
		var p struct{ Title string }
		if v, ok := sealedPayload(raw); err != nil || !ok || json.Unmarshal([]byte(v), &p) != nil || p.Title != fmt.Sprintf("v%d", edits) {
			t.Errorf("cache node %s holds %.80q, %v for the post; want v%d or nothing", c.Addr(), raw, err, edits)
		}
	}
}

// With every cache node down the app serves from the store: pages are 200
// with X-App-Cache: BYPASS, writes work, and once the breakers are open no
// request waits on a dead node. When the nodes come back the cache is used
// again, without the values the writes made stale.
func TestCacheAllNodesDown(t *testing.T) {
	c1, c2 := startCache(t, "127.0.0.2:0"), startCache(t, "127.0.0.3:0")
	addrs := []string{c1.Addr(), c2.Addr()}
	s := newCacheStack(t, "127.0.0.1:0", openDB(t), func() []string { return addrs })
	author := s.client(t)
	author.signup("dora")
	id := author.post("Before the outage", "Body.")["id"].(string)
	reader := s.client(t)
	testwait.Until(t, 10*time.Second, "the home page to be cached", func() bool {
		return reader.get("/").Header.Get("X-App-Cache") == "HIT"
	})

	c1.Close()
	c2.Close()
	for _, p := range []string{"/", "/p/" + id, "/api/v1/posts", "/api/v1/posts/" + id} {
		r := reader.get(p)
		want(t, p+" with the cache down", r, http.StatusOK)
		wantCache(t, p+" with the cache down", r, "BYPASS")
	}
	testwait.Until(t, 5*time.Second, "both breakers to open", func() bool {
		reader.get("/")
		for _, n := range cacheStatus(t, s).CacheTier.Nodes {
			if n.Up {
				return false
			}
		}
		return true
	})
	before := cacheStatus(t, s).CacheTier.Errors
	want(t, "edit with the cache down", author.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "During the outage"}), http.StatusOK)
	for range 10 {
		r := reader.get("/")
		want(t, "home with the cache down", r, http.StatusOK)
		wantCache(t, "home with the cache down", r, "BYPASS")
		wantIn(t, "home with the cache down", r, "During the outage")
	}
	if after := cacheStatus(t, s).CacheTier.Errors; after != before {
		t.Errorf("errors went from %d to %d over requests with open breakers: requests still call the dead nodes", before, after)
	}

	// The nodes come back (empty, as a restarted cache is).
	startCache(t, addrs[0])
	startCache(t, addrs[1])
	testwait.Until(t, 10*time.Second, "the cache to serve again", func() bool {
		r := reader.get("/")
		if strings.Contains(string(r.Body), "Before the outage") {
			t.Fatalf("home shows the title from before the edit")
		}
		return r.Header.Get("X-App-Cache") == "HIT"
	})
	wantIn(t, "home after the outage", reader.get("/"), "During the outage")
}

// sessionCookie returns the value of the session cookie c holds for s.
func sessionCookie(tb testing.TB, c *client) string {
	tb.Helper()
	u, _ := url(c.base)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == "blog_session" {
			return ck.Value
		}
	}
	tb.Fatalf("no session cookie")
	return ""
}

// withCookie is a client of s that sends only the given session cookie.
func withCookie(tb testing.TB, s *stack, session string) *client {
	tb.Helper()
	c := s.client(tb)
	u, _ := url(c.base)
	c.http.Jar.SetCookies(u, []*http.Cookie{{Name: "blog_session", Value: session, Path: "/"}})
	return c
}

// Stage 7: two app nodes share the store (over the network) and the cache.
// A user logged in on one is logged in on the other, stays logged in when
// the first dies and when the cache node holding the session dies, and a
// logout on either is a logout everywhere.
func TestSharedSessions(t *testing.T) {
	srv := startStoreServer(t, "127.0.0.1:0", t.TempDir())
	t.Cleanup(func() { srv.Close() })
	storeClient := func() *store.Client {
		c := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "primary-1", Addr: srv.Addr(), Primary: true}}})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := startCache(t, "127.0.0.2:0"), startCache(t, "127.0.0.3:0")
	nodes := cacheNodes(c1, c2)
	shared := func(c *app.Config, d *app.Deps) { c.Sessions = "shared" }
	a := newCacheStack(t, "127.0.0.4:0", storeClient(), nodes, shared)
	b := newCacheStack(t, "127.0.0.5:0", storeClient(), nodes, shared)

	onA := a.client(t)
	onA.signup("sam")
	session := sessionCookie(t, onA)
	onB := withCookie(t, b, session)
	r := onB.get("/api/v1/me")
	want(t, "me on the other app node", r, http.StatusOK)
	if got := r.JSON(t)["user"].(map[string]any)["handle"]; got != "sam" {
		t.Fatalf("me on B = %v, want sam", got)
	}
	want(t, "post on B with A's session", onB.json("POST", "/api/v1/posts", map[string]any{"title": "From B", "body": "x"}), http.StatusCreated)

	// The app node that logged the user in dies.
	if err := a.App.Close(); err != nil {
		t.Fatalf("close A: %v", err)
	}
	want(t, "me on B after A died", onB.get("/api/v1/me"), http.StatusOK)

	// The cache node holding the session dies; then the other one too.
	holder, rest := c1, c2
	if cacheHolds(t, c2.Addr(), "ss2:sess:"+sha256Hex(session)) {
		holder, rest = c2, c1
	}
	holder.Close()
	for range 5 {
		want(t, "me on B after the session's cache node died", onB.get("/api/v1/me"), http.StatusOK)
	}
	rest.Close()
	want(t, "me on B with no cache node", onB.get("/api/v1/me"), http.StatusOK)

	// A new app node, with the cache back: the session is there, and a
	// logout there is a logout on B too.
	c3 := startCache(t, "127.0.0.6:0")
	cc := newCacheStack(t, "127.0.0.7:0", storeClient(), cacheNodes(c3), shared)
	onC := withCookie(t, cc, session)
	want(t, "me on a new app node", onC.get("/api/v1/me"), http.StatusOK)
	want(t, "logout on the new node", onC.json("POST", "/api/v1/logout", nil), http.StatusNoContent)
	want(t, "me on B after the logout", onB.get("/api/v1/me"), http.StatusUnauthorized)
	want(t, "me on the new node after the logout", withCookie(t, cc, session).get("/api/v1/me"), http.StatusUnauthorized)
}

// The lesson of stage 7, the other way round: with memory sessions a user
// logged in on one app node is a stranger to the next.
func TestMemorySessionsStayOnOneNode(t *testing.T) {
	db := openDB(t)
	a, b := newStackOn(t, db), newStackOn(t, db)
	onA := a.client(t)
	onA.signup("mia")
	want(t, "me on A", onA.get("/api/v1/me"), http.StatusOK)
	want(t, "me on B", withCookie(t, b, sessionCookie(t, onA)).get("/api/v1/me"), http.StatusUnauthorized)
}

// Shared sessions are written through to the store: a session the cache
// never saw (or lost) is read back from it, and expired ones are swept.
func TestSharedSessionsStore(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	ss := app.NewSharedSessions(db, nil)
	live := app.Session{ID: app.NewSessionID(), UserID: "u1", Handle: "a", LastLSNs: store.LSNsOf(store.DefaultGroup, 7), Expires: time.Now().Add(time.Hour)}
	dead := app.Session{ID: app.NewSessionID(), UserID: "u2", Handle: "b", Expires: time.Now().Add(time.Minute)}
	for _, s := range []app.Session{live, dead} {
		if err := ss.Put(ctx, s); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	live.LastLSNs = store.LSNs{"": 9, "content": 4}
	if err := ss.Put(ctx, live); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	got, err := ss.Get(ctx, live.ID)
	if err != nil || got.LastLSNs.String() != "9,content=4" || got.Handle != "a" {
		t.Fatalf("Get = %+v, %v; want the session with LastLSNs 9,content=4", got, err)
	}
	if _, err := ss.Get(ctx, "not-a-session"); err != app.ErrNoSession {
		t.Errorf("Get(junk) err = %v, want ErrNoSession", err)
	}
	if err := ss.Sweep(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if _, err := db.Get(ctx, "sessions.byid", sha256Hex(live.ID)); err != nil {
		t.Fatalf("the live session is not in the store under the SHA-256 of its id: %v", err)
	}
	if _, err := db.Get(ctx, "sessions.byid", sha256Hex(dead.ID)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired session is still in the store after a sweep: %v", err)
	}
	if _, err := ss.Get(ctx, live.ID); err != nil {
		t.Errorf("a live session is gone after a sweep: %v", err)
	}
	if err := ss.Delete(ctx, live.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := ss.Get(ctx, live.ID); err != app.ErrNoSession {
		t.Errorf("Get after Delete err = %v, want ErrNoSession", err)
	}
}

// cacheHolds reports whether the cache node at addr holds key.
func cacheHolds(tb testing.TB, addr, key string) bool {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	n, _ := rdb.Exists(context.Background(), key).Result()
	return n == 1
}

// sealedPayload returns the value of a sealed cache entry as a cache node
// holds it (D<expires>.<mac><value>; see pkg/app/cachetier/seal.go).
func sealedPayload(raw string) (string, bool) {
	if !strings.HasPrefix(raw, "D") {
		return "", false
	}
	_, rest, ok := strings.Cut(raw[1:], ".")
	if !ok || len(rest) < 43 {
		return "", false
	}
	return rest[43:], true
}
