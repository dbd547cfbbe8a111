//go:build linux

// End-to-end tests of stages 3 to 9: each starts the stage with `node up`
// (helpers of e2e_test.go), drives the blog, runs a short `node load`,
// breaks a node with the fault commands and checks the lesson that
// docs/stages.md gives for the stage, then Ctrl-C and the orphan check.
// Each stage has loopback addresses of its own (127.0.25.x to 127.0.31.x).

package launch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/loadgen"
	"github.com/scalestack/scalestack/pkg/queue"
)

// The stage tests run one after another: each stack is 4 to 16 processes,
// and several at once on a 2-core CI machine turn timing checks into
// measurements of the machine.

// TestStage3 checks the load balancer's lesson: killing an app under load
// fails no GET and applies no POST twice, the lb spreads over both apps
// again once the app is back, and, since sessions live in app memory, a
// user whose sessions were on the killed app is logged out.
func TestStage3(t *testing.T) {
	s := startStack(t, 3, "127.0.25.2")
	if got := s.nodeNames(); got != "db-1 app-1 app-2 lb-1" {
		t.Fatalf("stage 3 nodes = %s, want db-1 app-1 app-2 lb-1", got)
	}
	url := s.state().URL
	if url != "http://127.0.25.50:8080" {
		t.Errorf("URL = %s, want lb-1's port, http://127.0.25.50:8080", url)
	}
	// Ready means the entry point already serves through the whole stage:
	// right after node up says so, the lb spreads anonymous GETs over both
	// apps (issue 17: all ten went to app-1, the lb had not admitted app-2).
	if got := shares(t, url, "/api/v1/posts", 10, "X-Served-By"); got["app-1"] == 0 || got["app-2"] == 0 {
		t.Errorf("10 anonymous GETs right after ready: %v, want both apps to serve", got)
	}
	// One user whose session lives on each app (the lb keeps each on one).
	onApp := usersOnApps(t, url, "s3", "app-1", "app-2")
	id := onApp["app-2"].post("Before app-1 died")

	// Anonymous readers, paced, and a writer on each app that counts what
	// it was told; meanwhile a node load; app-1 dies in the middle.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	reads := readLoad(ctx, &wg, url, []string{"/api/v1/posts/" + id, "/api/v1/posts", "/"}, 40)
	w1 := writeLoad(ctx, &wg, onApp["app-1"], "s3-a1", 10)
	w2 := writeLoad(ctx, &wg, onApp["app-2"], "s3-a2", 10)
	loadDone := make(chan loadgen.Summary, 1)
	go func() {
		loadDone <- s.load("--duration", "4s", "--rate", "30", "--users", "6", "--mix", "browse=80,read=15,post=5")
	}()
	time.Sleep(1500 * time.Millisecond) // the kill lands in the middle of the load
	s.run("kill", "app-1")
	s.wantState("app-1", launch.StateDead)
	sum := <-loadDone
	cancel()
	wg.Wait()

	if n, errs := reads.counts(); n == 0 || len(errs) > 0 {
		t.Errorf("anonymous GETs across the kill: %d sent, %d failed %v; want none failed", n, len(errs), first(errs, 5))
	}
	for _, op := range []string{loadgen.OpBrowse, loadgen.OpRead} {
		if o := sum.Ops[op]; o.Sent == 0 || o.Errors != 0 {
			t.Errorf("node load %s: %d sent, %d errors %v; want no failed GET", op, o.Sent, o.Errors, sum.ErrorKinds)
		}
	}
	if sum.Writes.Lost != 0 {
		t.Errorf("node load lost %d acknowledged writes", sum.Writes.Lost)
	}
	// No POST applied twice: every acknowledged title exists once, and no
	// title exists more than once (an unacknowledged one may exist once:
	// it reached app-1 before the kill).
	titles := postTitles(t, url, onApp["app-1"].handle, onApp["app-2"].handle)
	for _, w := range []*writer{w1, w2} {
		acked, tried := w.result()
		for _, title := range acked {
			if titles[title] != 1 {
				t.Errorf("acknowledged post %q exists %d times, want 1", title, titles[title])
			}
		}
		t.Logf("%s: %d POSTs tried, %d acknowledged", w.prefix, tried, len(acked))
	}
	for title, n := range titles {
		if n > 1 {
			t.Errorf("post %q exists %d times: a POST was applied twice", title, n)
		}
	}
	if acked, _ := w2.result(); len(acked) == 0 {
		t.Errorf("the writer on app-2 got no POST acknowledged")
	}

	// Memory sessions: the user of app-1 is logged out; app-2's is not.
	if resp, err := onApp["app-1"].get("/api/v1/me"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/me of app-1's user after the kill: %s %v, want 401 (sessions were in app-1's memory)", status(resp), err)
	}
	if resp, err := onApp["app-2"].get("/api/v1/me"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/me of app-2's user: %s %v, want 200", status(resp), err)
	}

	// Back: once the lb sees app-1 healthy, anonymous requests are spread
	// evenly again.
	s.run("start", "app-1")
	s.wantState("app-1", launch.StateRunning)
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if got := shares(t, url, "/api/v1/posts", 4, "X-Served-By"); got["app-1"] == 0 {
			return fmt.Errorf("app-1 gets no traffic after start: %v", got)
		}
		return nil
	})
	got := shares(t, url, "/api/v1/posts", 100, "X-Served-By")
	if got["app-1"] < 40 || got["app-2"] < 40 {
		t.Errorf("100 anonymous GETs after app-1 came back: %v, want about 50/50", got)
	}
	s.interrupt()
}

// TestStage4 checks replication's lesson: the primary dies under a load
// that checks read-your-writes, a replica takes over within seconds,
// nothing acknowledged is lost and every user reads their own writes.
func TestStage4(t *testing.T) {
	s := startStack(t, 4, "127.0.26.2")
	if got := s.nodeNames(); got != "db-1 replica-1 replica-2 app-1 app-2 lb-1" {
		t.Fatalf("stage 4 nodes = %s, want db-1 replica-1 replica-2 app-1 app-2 lb-1", got)
	}
	url := s.state().URL
	b := newBlogClient(t, url)
	b.signup("stage4_carol")
	id := b.post("Written to db-1")
	b.wantTitle(id, "Written to db-1")

	loadDone := make(chan loadgen.Summary, 1)
	go func() {
		loadDone <- s.load("--duration", "5s", "--rate", "30", "--users", "4", "--read-your-writes", "--mix", "browse=50,read=20,comment=15,post=15")
	}()
	time.Sleep(1500 * time.Millisecond)
	killed := time.Now()
	s.run("kill", "db-1")
	s.wantState("db-1", launch.StateDead)
	// Failover: a write is acknowledged again within a few seconds.
	var n int
	testwait.RetryUntil(t, 15*time.Second, func() error {
		n++
		resp, body, err := b.do(http.MethodPost, "/api/v1/posts", map[string]any{"title": fmt.Sprintf("After the failover %d", n), "body": "x", "published": true})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST after killing db-1: %s %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
	t.Logf("first write acknowledged %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	if d := time.Since(killed); d > 10*time.Second {
		t.Errorf("writes came back %s after the primary died, want within a few seconds", d)
	}
	wantFailoverShown(t, s)
	sum := <-loadDone
	if sum.OK == 0 || sum.Writes.Acknowledged == 0 || sum.Writes.Lost != 0 {
		t.Errorf("load across the failover: %d ok, %d writes acknowledged, %d lost %v; want writes and none lost", sum.OK, sum.Writes.Acknowledged, sum.Writes.Lost, sum.Writes.Examples)
	}
	if r := sum.ReadYourWrites; r.Checks == 0 || r.Violations != 0 {
		t.Errorf("read-your-writes across the failover: %d checks, %d violations %v; want checks and 0 violations", r.Checks, r.Violations, r.Examples)
	}
	t.Logf("load across the failover: %d sent, %d errors %v", sum.Sent, sum.Errors, sum.ErrorKinds)
	b.wantTitle(id, "Written to db-1") // acknowledged before the kill
	s.interrupt()
}

// wantFailoverShown checks that the failover of db-1 is visible: node up's
// terminal names the new primary with its epoch, events.jsonl has it, and
// `node ps` shows that node as the primary and dead db-1 as nothing.
func wantFailoverShown(t *testing.T, s *stack) {
	t.Helper()
	line := regexp.MustCompile(`(replica-\d) is the primary at epoch (\d+), \d+\.\ds after db-1 was last seen as primary`)
	var m []string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if m = line.FindStringSubmatch(s.out.String()); m == nil {
			return fmt.Errorf("node up printed no new primary")
		}
		return nil
	})
	primary, epoch := m[1], m[2]
	t.Logf("node up: %s", m[0])
	events, err := launch.ReadEvents(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range events {
		found = found || e.Kind == launch.EventPrimary && e.Node == primary && fmt.Sprint(e.Epoch) == epoch && e.Previous == "db-1"
	}
	if !found {
		t.Errorf("%s has no primary event for %s at epoch %s after db-1: %+v", launch.EventsFile, primary, epoch, events)
	}
	// ps asks the nodes themselves: retry while the other replica has not
	// learnt the new primary yet.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		procs, _, _, err := launch.PS(s.dir)
		if err != nil {
			return err
		}
		for _, p := range procs {
			var got string
			if p.Store != nil {
				got = p.Store.Describe(p.Name)
			}
			var want string
			switch {
			case p.Name == "db-1":
				want = "" // dead: ps claims nothing for it
			case p.Name == primary:
				want = "primary (epoch " + epoch + ")"
			case strings.HasPrefix(p.Name, "replica-"):
				want = "replica of " + primary + " (epoch " + epoch + ")"
			default:
				continue
			}
			if got != want {
				return fmt.Errorf("ps: %s live role %q, want %q", p.Name, got, want)
			}
		}
		return nil
	})
}

// TestStage5 checks the cache tier: repeated reads of a post are cache
// hits, an edit is read back at once (no stale read from the cache), and
// the app keeps answering when the cache node dies.
func TestStage5(t *testing.T) {
	s := startStack(t, 5, "127.0.27.2")
	if got := s.nodeNames(); got != "db-1 replica-1 replica-2 cache-1 app-1 app-2 lb-1" {
		t.Fatalf("stage 5 nodes = %s, want db-1 replica-1 replica-2 cache-1 app-1 app-2 lb-1", got)
	}
	url := s.state().URL
	b := newBlogClient(t, url)
	b.signup("stage5_dave")
	id := b.post("Cached title 0")
	b.wantTitle(id, "Cached title 0")
	// A write leaves a tombstone in the cache for 2 s (--app-cache-tombstone-ttl)
	// that no reader may fill; after it, one read fills and the next hit.
	testwait.RetryUntil(t, 6*time.Second, func() error {
		resp, err := b.get("/api/v1/posts/" + id)
		if err != nil || resp.Header.Get("X-App-Cache") != "HIT" {
			return fmt.Errorf("repeated GET of a post: X-App-Cache %q (%s %v), want HIT", header(resp, "X-App-Cache"), status(resp), err)
		}
		return nil
	})
	// Every edit is seen by the very next read, through either app.
	anon := newBlogClient(t, url)
	for i := 1; i <= 5; i++ {
		want := fmt.Sprintf("Cached title %d", i)
		b.send(http.MethodPut, "/api/v1/posts/"+id, map[string]any{"title": want}, http.StatusOK)
		for _, c := range []*blogClient{b, anon, anon} {
			if got := c.title(id); got != want {
				t.Errorf("read right after edit %d: title %q, want %q (a stale cached post)", i, got, want)
			}
		}
	}
	sum := s.load("--duration", "2s", "--rate", "30", "--users", "4")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 || sum.AppCache["HIT"]+sum.AppCache["MISS"] == 0 {
		t.Errorf("load: %d ok, %d errors %v, %d lost, app cache %v; want no errors, through the cache", sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost, sum.AppCache)
	}
	t.Logf("load: app cache %v", sum.AppCache)
	// The cache dies: slower, but every read still answers.
	s.run("kill", "cache-1")
	s.wantState("cache-1", launch.StateDead)
	for i := 0; i < 10; i++ {
		if got := anon.title(id); got != "Cached title 5" {
			t.Fatalf("read %d with cache-1 dead: %q, want the post", i, got)
		}
	}
	s.interrupt()
}

// TestStage6 checks the edge: a second anonymous read is an edge hit, an
// edit is visible through the edge within a second (purge over NATS), a
// logged-in page is never served to someone else, and killing an app
// leaves the edge answering.
func TestStage6(t *testing.T) {
	s := startStack(t, 6, "127.0.28.2")
	if got := s.nodeNames(); got != "db-1 replica-1 replica-2 cache-1 app-1 app-2 lb-1 edge-1" {
		t.Fatalf("stage 6 nodes = %s, want db-1 replica-1 replica-2 cache-1 app-1 app-2 lb-1 edge-1", got)
	}
	url := s.state().URL
	if url != "http://127.0.28.60:8000" {
		t.Errorf("URL = %s, want edge-1's port, http://127.0.28.60:8000", url)
	}
	alice := newBlogClient(t, url)
	alice.signup("stage6_erin")
	id := alice.post("Edge title 0")
	alice.wantTitle(id, "Edge title 0")

	anon := newBlogClient(t, url)
	anon.get("/api/v1/posts/" + id)
	if resp, err := anon.get("/api/v1/posts/" + id); err != nil || resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("second anonymous GET of a post: X-Cache %q (%s %v), want HIT", header(resp, "X-Cache"), status(resp), err)
	}
	// Edits: the edge's copy is purged; s-maxage alone would take 10 s.
	// The edge is not ready before its purge subscription is live, so the
	// first edit after node up says ready shows as fast as the others
	// (within 5 s here: the app's purge publisher may still be connecting
	// to NATS, and holds purges until it has).
	anon.get("/p/" + id)
	alice.send(http.MethodPut, "/api/v1/posts/"+id, map[string]any{"title": "Edge title warm"}, http.StatusOK)
	warm := time.Now()
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if _, body, err := anon.fetch("/p/"+id, 2*time.Second); err != nil || !bytes.Contains(body, []byte("<h1>Edge title warm</h1>")) {
			return fmt.Errorf("first edit not visible through the edge: %v %s", err, h1.Find(body))
		}
		return nil
	})
	t.Logf("first edit after ready visible through the edge after %s", time.Since(warm).Round(time.Millisecond))
	for i := 1; i <= 3; i++ {
		anon.get("/p/" + id) // the page is cached too
		want := fmt.Sprintf("Edge title %d", i)
		alice.send(http.MethodPut, "/api/v1/posts/"+id, map[string]any{"title": want}, http.StatusOK)
		edited := time.Now()
		testwait.RetryUntil(t, 3*time.Second, func() error {
			if got := anon.title(id); got != want {
				return fmt.Errorf("edit %d: edge still serves %q", i, got)
			}
			resp, body, err := anon.fetch("/p/"+id, 2*time.Second)
			if err != nil {
				return err
			}
			if !bytes.Contains(body, []byte("<h1>"+want+"</h1>")) {
				return fmt.Errorf("edit %d: post page lacks the new title: %s X-Cache %s Age %s X-Store %s %s, %s", i, resp.Status, resp.Header.Get("X-Cache"),
					resp.Header.Get("Age"), resp.Header.Get("X-Store"), resp.Header.Get("X-Store-Lsn"), h1.Find(body))
			}
			return nil
		})
		if d := time.Since(edited); d > time.Second {
			t.Errorf("edit %d visible through the edge after %s, want within 1s", i, d.Round(time.Millisecond))
		}
	}
	// Personal pages: each user sees their own, anonymous users none.
	bob := newBlogClient(t, url)
	bob.signup("stage6_bob")
	checkPersonalPages(t, alice, "stage6_erin", bob, "stage6_bob", newBlogClient(t, url))

	sum := s.load("--duration", "2s", "--rate", "30", "--users", "4", "--mix", "browse=70,read=15,page=10,comment=5")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load: %d ok, %d errors %v, %d lost; want no errors", sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}
	// An app dies: the edge keeps answering anonymous readers.
	s.run("kill", "app-1")
	s.wantState("app-1", launch.StateDead)
	for i := 0; i < 10; i++ {
		if got := anon.title(id); got != "Edge title 3" {
			t.Fatalf("read %d through the edge with app-1 dead: %q, want the post", i, got)
		}
	}
	s.interrupt()
}

// TestStage7 checks shared sessions: killing the app that serves a
// logged-in user, then the cache node, logs nobody out.
func TestStage7(t *testing.T) {
	s := startStack(t, 7, "127.0.29.2")
	url := s.state().URL
	u := newBlogClient(t, url)
	u.handle = "stage7_frank"
	u.signup(u.handle)
	id := u.post("Stateless")
	resp, err := u.get("/api/v1/me")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/me: %s %v, want 200", status(resp), err)
	}
	app := resp.Header.Get("X-Served-By")
	if !strings.HasPrefix(app, "app-") {
		t.Fatalf("/api/v1/me served by %q, want an app node", app)
	}
	sum := s.load("--duration", "2s", "--rate", "30", "--users", "4")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load: %d ok, %d errors %v, %d lost; want no errors", sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}
	if sum.ServedBy["app-1"] == 0 || sum.ServedBy["app-2"] == 0 {
		t.Errorf("served by %v, want both apps (no stickiness at stage 7)", sum.ServedBy)
	}

	s.run("kill", app)
	s.wantState(app, launch.StateDead)
	u.wantMe("after killing " + app)
	s.run("kill", "cache-1")
	s.wantState("cache-1", launch.StateDead)
	u.wantMe("after killing " + app + " and cache-1")
	u.send(http.MethodPost, "/api/v1/posts/"+id+"/comments", map[string]any{"body": "still logged in"}, http.StatusCreated)
	s.interrupt()
}

// TestStage8 checks the queue: an image upload is answered at once and its
// thumbnail appears later, and killing a worker during a burst of
// sign-ups loses no welcome e-mail.
func TestStage8(t *testing.T) {
	s := startStack(t, 8, "127.0.30.2")
	if got := s.nodeNames(); got != "db-1 replica-1 replica-2 cache-1 worker-1 worker-2 app-1 app-2 lb-1 edge-1" {
		t.Fatalf("stage 8 nodes = %s", got)
	}
	url := s.state().URL
	u := newBlogClient(t, url)
	u.signup("stage8_grace")
	id := u.post("With a picture")
	out := u.upload("/api/v1/posts/"+id+"/image", pngOf(t, 960, 640))
	if out.ImageURL == "" {
		t.Fatalf("upload answered no image_url")
	}
	t.Logf("upload answered with thumb_url %q", out.ThumbURL)
	var thumb string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		_, body, err := u.fetch("/api/v1/posts/"+id+"?t="+fmt.Sprint(time.Now().UnixNano()), 2*time.Second)
		if err != nil {
			return err
		}
		var p struct{ Post postJSON }
		json.Unmarshal(body, &p)
		if p.Post.ThumbURL == "" {
			return fmt.Errorf("post %s has no thumbnail yet", id)
		}
		thumb = p.Post.ThumbURL
		return nil
	})
	resp, body, err := u.fetch(thumb, 2*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", thumb, status(resp), err)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width != 480 {
		t.Errorf("thumbnail: %v, %dx%d; want a 480-pixel wide image", err, cfg.Width, cfg.Height)
	}

	// A write's trace id, answered in X-Trace-Id, is on the worker's line
	// for the job the write caused (edge → lb → app → queue → worker).
	resp, _, err = u.do(http.MethodPost, "/api/v1/posts", map[string]any{"title": "Traced", "body": "b", "tags": []string{}, "published": true})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/posts: %s %v, want 201", status(resp), err)
	}
	traceID := resp.Header.Get("X-Trace-Id")
	if len(traceID) != 32 {
		t.Fatalf("POST /api/v1/posts: X-Trace-Id %q, want a trace id", traceID)
	}
	testwait.RetryUntil(t, 10*time.Second, func() error {
		logs, _ := filepath.Glob(filepath.Join(s.dir, "logs", "worker-*.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); bytes.Contains(b, []byte(traceID)) {
				return nil
			}
		}
		return fmt.Errorf("trace %s of the POST is in no worker's log", traceID)
	})

	// Sign-ups while worker-1 dies: every one gets its welcome e-mail.
	const signups = 30
	var emails []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < signups; i++ {
		handle := fmt.Sprintf("s8_user_%02d", i)
		emails = append(emails, handle+"@example.org")
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 50 * time.Millisecond) // 1.5 s of sign-ups
			c := newBlogClient(t, url)
			resp, body, err := c.do(http.MethodPost, "/api/v1/signup", map[string]string{"handle": handle, "email": handle + "@example.org", "password": "correct horse"})
			if err != nil || resp.StatusCode != http.StatusCreated {
				mu.Lock()
				t.Errorf("signup %s: %s %v %s", handle, status(resp), err, body)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(600 * time.Millisecond)
	s.run("kill", "worker-1")
	wg.Wait()
	s.wantState("worker-1", launch.StateDead)
	var got map[string]int
	// Jobs that worker-1 held when it died (running, or fetched and
	// buffered) go to worker-2 only when their ack wait ends: the wait is
	// that long, plus time to run them, though it is over in a second or two
	// when the kill caught no job (most runs).
	testwait.RetryUntil(t, queue.DefaultJobsConfig().AckWait+15*time.Second, func() error {
		got = welcomes(t, s.dir)
		var missing []string
		for _, e := range emails {
			if got[e] == 0 {
				missing = append(missing, e)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d sign-ups have no welcome e-mail in any outbox: %v", len(missing), signups, first(missing, 5))
		}
		return nil
	})
	for _, e := range emails {
		if got[e] > 1 {
			// At-least-once delivery: a job redelivered after the kill may
			// be sent again by the other worker (its .sent marker is in the
			// dead worker's outbox).
			t.Logf("%s has %d welcome e-mails", e, got[e])
		}
	}
	sum := s.load("--duration", "2s", "--rate", "30", "--users", "4")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load with worker-1 dead: %d ok, %d errors %v, %d lost; want no errors", sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}
	s.interrupt()
}

// TestStage9 checks horizontal scaling: six apps and two lbs share the
// load, and an app added with `node add` takes traffic.
func TestStage9(t *testing.T) {
	s := startStack(t, 9, "127.0.31.2", "--scale", "app=6")
	if n := len(s.state().Nodes); n != 16 {
		t.Fatalf("stage 9 with app=6 has %d nodes (%s), want 16", n, s.nodeNames())
	}
	// Logged-in users pass the edge (--edge-pass-cookie), so node load's
	// requests reach the lbs and apps.
	sum := s.load("--duration", "3s", "--rate", "60", "--users", "6")
	if sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load: %d errors %v, %d lost; want none", sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}
	wantSpread(t, "apps (X-Served-By)", sum.ServedBy, []string{"app-1", "app-2", "app-3", "app-4", "app-5", "app-6"}, sum.Sent)
	wantSpread(t, "lbs (X-LB)", sum.LB, []string{"lb-1", "lb-2"}, sum.Sent)

	out := s.run("add", "app")
	if !strings.Contains(out, "added app-7") {
		t.Fatalf("node add app said %q, want app-7", out)
	}
	s.wantState("app-7", launch.StateRunning)
	u := newBlogClient(t, s.state().URL)
	u.signup("stage9_heidi")
	testwait.RetryUntil(t, 10*time.Second, func() error {
		for i := 0; i < 14; i++ {
			if resp, err := u.get("/api/v1/me"); err == nil && resp.Header.Get("X-Served-By") == "app-7" {
				return nil
			}
		}
		return fmt.Errorf("app-7 serves no request")
	})
	sum = s.load("--duration", "2s", "--rate", "60", "--users", "6")
	if sum.Errors != 0 || sum.ServedBy["app-7"] == 0 {
		t.Errorf("load after node add app: %d errors %v, served by %v; want no errors and app-7 serving", sum.Errors, sum.ErrorKinds, sum.ServedBy)
	}
	s.interrupt()
}

// wantSpread fails unless each of names served a fair share of n requests:
// at least half of an even share.
func wantSpread(t testing.TB, what string, got map[string]int64, names []string, n int64) {
	t.Helper()
	for _, name := range names {
		if got[name]*int64(len(names))*2 < n {
			t.Errorf("%s: %v of %d requests, want each of %s near 1/%d", what, got, n, strings.Join(names, " "), len(names))
			return
		}
	}
}

// usersOnApps signs up users until one has a session on each of apps (the
// sticky lb keeps a user on the app that logged them in), and returns them
// by app.
func usersOnApps(t testing.TB, url, prefix string, apps ...string) map[string]*blogClient {
	t.Helper()
	out := map[string]*blogClient{}
	// node up is ready when every node is; the lb takes an app into
	// rotation only after its health checks rise, a moment later. Keep
	// signing up (for a bounded time) until each app holds a user.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; len(out) < len(apps); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d sign-ups in 20s and no user on each of %v: %v", i, apps, out)
		}
		if i > 0 && i%10 == 0 {
			time.Sleep(200 * time.Millisecond) // let health checks run
		}
		c := newBlogClient(t, url)
		c.handle = fmt.Sprintf("%s_user%d", prefix, i)
		c.signup(c.handle)
		resp, err := c.get("/api/v1/me")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/me after sign-up: %s %v", status(resp), err)
		}
		if app := resp.Header.Get("X-Served-By"); out[app] == nil {
			out[app] = c
		}
	}
	return out
}

// wantMe checks the client is still logged in as itself.
func (b *blogClient) wantMe(when string) {
	b.t.Helper()
	resp, body, err := b.fetch("/api/v1/me", 2*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"handle":"`+b.handle+`"`)) {
		b.t.Errorf("GET /api/v1/me %s: %s %v %s, want 200 as %s", when, status(resp), err, bytes.TrimSpace(body), b.handle)
	}
}

// checkPersonalPages fetches each user's personal pages, each twice so that
// a cache would have a copy, then checks nobody else gets them.
func checkPersonalPages(t testing.TB, a *blogClient, aHandle string, b *blogClient, bHandle string, anon *blogClient) {
	t.Helper()
	for _, path := range []string{"/api/v1/me", "/", "/new"} {
		for _, c := range []struct {
			c            *blogClient
			mine, theirs string
		}{{a, aHandle, bHandle}, {b, bHandle, aHandle}, {a, aHandle, bHandle}, {b, bHandle, aHandle}} {
			resp, body, err := c.c.fetch(path, 2*time.Second)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("%s as %s: %s %v", path, c.mine, status(resp), err)
				continue
			}
			if path != "/" && !bytes.Contains(body, []byte(c.mine)) {
				t.Errorf("%s as %s does not name them", path, c.mine)
			}
			if path == "/api/v1/me" && bytes.Contains(body, []byte(c.theirs)) {
				t.Errorf("%s as %s shows %s's data (X-Cache %s)", path, c.mine, c.theirs, resp.Header.Get("X-Cache"))
			}
		}
		for i := 0; i < 2; i++ {
			resp, body, err := anon.fetch(path, 2*time.Second)
			if err != nil {
				t.Errorf("anonymous %s: %v", path, err)
				continue
			}
			if bytes.Contains(body, []byte("Log out")) || (path == "/api/v1/me" && resp.StatusCode != http.StatusUnauthorized) {
				t.Errorf("anonymous %s: %s, X-Cache %s, shows a logged-in page:\n%.300s", path, resp.Status, resp.Header.Get("X-Cache"), body)
			}
		}
	}
}

// do sends a JSON request and returns the answer; it does not fail the test.
func (b *blogClient) do(method, path string, in any) (*http.Response, []byte, error) {
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, b.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp, raw, err
}

type postJSON struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	ImageURL string `json:"image_url"`
	ThumbURL string `json:"thumb_url"`
}

// upload sends img as the post's image and returns the post as answered.
func (b *blogClient) upload(path string, img []byte) postJSON {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", "picture.png")
	fw.Write(img)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	start := time.Now()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("upload: %s %s", resp.Status, raw)
	}
	b.t.Logf("upload answered in %s", time.Since(start).Round(time.Millisecond))
	var out struct{ Post postJSON }
	json.Unmarshal(raw, &out)
	return out.Post
}

func pngOf(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// welcomes counts the welcome e-mails in every node's outbox by recipient
// address.
func welcomes(t testing.TB, dir string) map[string]int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "data", "*", "outbox", "*.eml"))
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte("\nSubject: Welcome")) {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if to, ok := strings.CutPrefix(line, "To: "); ok {
				if i, j := strings.IndexByte(to, '<'), strings.IndexByte(to, '>'); i >= 0 && j > i {
					out[to[i+1:j]]++
				}
				break
			}
		}
	}
	return out
}

// postTitles counts the titles of every post of the users.
func postTitles(t testing.TB, url string, handles ...string) map[string]int {
	t.Helper()
	c := newBlogClient(t, url)
	out := map[string]int{}
	for _, h := range handles {
		for page := 1; page != 0; {
			resp, body, err := c.fetch(fmt.Sprintf("/api/v1/users/%s?page=%d", h, page), 5*time.Second)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("list %s's posts: %s %v", h, status(resp), err)
			}
			var p struct {
				Posts []postJSON
				Next  int
			}
			json.Unmarshal(body, &p)
			for _, post := range p.Posts {
				out[post.Title]++
			}
			page = p.Next
		}
	}
	return out
}

// shares sends n anonymous GETs of path and counts them by header.
func shares(t testing.TB, url, path string, n int, header string) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	out := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out[resp.Header.Get(header)]++
	}
	return out
}

// reader is a paced anonymous client; it records what failed.
type reader struct {
	mu   sync.Mutex
	n    int
	errs []string
}

func (r *reader) counts() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.errs
}

// readLoad GETs the paths in turn at rate per second until ctx ends; each
// request runs in its own goroutine, so a slow answer does not slow the
// rate.
func readLoad(ctx context.Context, wg *sync.WaitGroup, url string, paths []string, rate int) *reader {
	r := &reader{}
	c := &http.Client{Timeout: 5 * time.Second}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			path := paths[i%len(paths)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(url + path)
				msg := ""
				if err != nil {
					msg = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						msg = path + ": " + resp.Status
					}
				}
				r.mu.Lock()
				r.n++
				if msg != "" {
					r.errs = append(r.errs, msg)
				}
				r.mu.Unlock()
			}()
		}
	}()
	return r
}

// writer is one logged-in user posting unique titles, one at a time.
type writer struct {
	prefix string
	tried  atomic.Int64
	mu     sync.Mutex
	acked  []string
}

func (w *writer) result() ([]string, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.tried.Load()
}

func writeLoad(ctx context.Context, wg *sync.WaitGroup, b *blogClient, prefix string, rate int) *writer {
	w := &writer{prefix: prefix}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			title := fmt.Sprintf("%s-%04d", prefix, i)
			w.tried.Add(1)
			resp, _, err := b.do(http.MethodPost, "/api/v1/posts", map[string]any{"title": title, "body": "x", "published": true})
			if err == nil && resp.StatusCode == http.StatusCreated {
				w.mu.Lock()
				w.acked = append(w.acked, title)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

var h1 = regexp.MustCompile(`<h1>[^<]*</h1>`)

func header(r *http.Response, name string) string {
	if r == nil {
		return ""
	}
	return r.Header.Get(name)
}

func first[T any](s []T, n int) []T { return s[:min(n, len(s))] }
