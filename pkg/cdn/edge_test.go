package cdn_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cdn"
)

func TestHitAfterMiss(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Surrogate-Key", "post-42 home")
		w.Header().Set("Via", "1.1 lb-1")
		fmt.Fprint(w, "post 42")
	})
	e := newEdge(t, o.URL, nil)

	first := get(t, e, "/p/42")
	wantCache(t, "first GET", first, cdn.Miss, "post 42")
	second := get(t, e, "/p/42")
	wantCache(t, "second GET", second, cdn.Hit, "post 42")
	if got := o.hits.Load(); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
	for _, r := range []response{first, second} {
		if got := r.header.Get("Surrogate-Key"); got != "" {
			t.Errorf("Surrogate-Key = %q reached the client, want it stripped", got)
		}
		if got, want := r.header.Get("X-Edge"), "edge-test"; got != want {
			t.Errorf("X-Edge = %q, want %q", got, want)
		}
		if got, want := r.header.Get("Via"), "1.1 lb-1, 1.1 edge-test"; got != want {
			t.Errorf("Via = %q, want %q", got, want)
		}
		if r.header.Get("Age") == "" {
			t.Errorf("no Age on a %s response", r.cache())
		}
	}
	head := do(t, e, http.MethodHead, "/p/42")
	wantCache(t, "HEAD after GET", head, cdn.Hit, "")
	if head.body != "" || head.header.Get("Content-Length") != "7" {
		t.Fatalf("HEAD: body %q, Content-Length %q; want none and 7", head.body, head.header.Get("Content-Length"))
	}
	s := e.Snapshot()
	if s.Hits != 2 || s.Misses != 1 || s.Objects != 1 || s.OriginRequests != 1 {
		t.Fatalf("Snapshot = hits %d misses %d objects %d origin %d; want 2, 1, 1, 1", s.Hits, s.Misses, s.Objects, s.OriginRequests)
	}
}

func TestHeadMissFillsFromGet(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("origin got %s, want GET for a HEAD miss", r.Method)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "body")
	})
	e := newEdge(t, o.URL, nil)
	wantCache(t, "HEAD miss", do(t, e, http.MethodHead, "/a"), cdn.Miss, "")
	wantCache(t, "GET after HEAD", get(t, e, "/a"), cdn.Hit, "body")
}

func TestNothingStoredWithoutReason(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		req    []string
	}{
		{"no freshness information", []string{"ETag", `"x"`}, nil},
		{"no-store", []string{"Cache-Control", "no-store, max-age=60"}, nil},
		{"private", []string{"Cache-Control", "private, max-age=60"}, nil},
		{"vary star", []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil},
		{"authorization", []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer alice"}},
		{"set-cookie", []string{"Cache-Control", "max-age=60", "Set-Cookie", "s=1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i < len(tt.header); i += 2 {
					w.Header().Add(tt.header[i], tt.header[i+1])
				}
				fmt.Fprint(w, "x")
			})
			e := newEdge(t, o.URL, nil)
			get(t, e, "/x", tt.req...)
			wantCache(t, "second GET", get(t, e, "/x", tt.req...), cdn.Miss, "x")
			if got := o.hits.Load(); got != 2 {
				t.Fatalf("origin requests = %d, want 2", got)
			}
		})
	}
}

// TestRequestIDNotReplayed: X-Request-Id names one exchange with the
// origin; a hit is another exchange and must not repeat it.
func TestRequestIDNotReplayed(t *testing.T) {
	var n atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("X-Request-Id", fmt.Sprintf("origin-%d", n.Add(1)))
		fmt.Fprint(w, "page")
	})
	e := newEdge(t, o.URL, nil)
	get(t, e, "/p")
	hit := get(t, e, "/p")
	wantCache(t, "second GET", hit, cdn.Hit, "page")
	if got := hit.header.Get("X-Request-Id"); got != "" {
		t.Fatalf("hit repeats the filling request's X-Request-Id %q", got)
	}
}

func TestHeuristicFreshness(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", time.Now().Add(-10*time.Hour).UTC().Format(http.TimeFormat))
		fmt.Fprint(w, "old page")
	})
	e := newEdge(t, o.URL, nil)
	get(t, e, "/old")
	wantCache(t, "second GET", get(t, e, "/old"), cdn.Hit, "old page")
}

func TestCoalescing(t *testing.T) {
	const clients = 1000
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "public, max-age=60")
		fmt.Fprint(w, "popular")
	})
	e := newEdge(t, o.URL, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(tr.CloseIdleConnections)

	var wg sync.WaitGroup
	var bad atomic.Int64
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.RoundTrip(mustRequest(t, "GET", "http://"+e.Addr()+"/hot"))
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "popular" || resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	// Hold the origin until every client is waiting on the one fetch.
	testwait.Until(t, 5*time.Second, "999 coalesced waiters", func() bool { return e.Snapshot().Coalesced >= clients-1 })
	close(release)
	wg.Wait()
	if got := o.hits.Load(); got != 1 {
		t.Fatalf("origin requests = %d for %d concurrent misses, want 1", got, clients)
	}
	if got := bad.Load(); got != 0 {
		t.Fatalf("%d of %d clients got an error or a wrong body", got, clients)
	}
}

func mustRequest(t testing.TB, method, url string) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Errorf("NewRequest: %v", err)
	}
	return req
}

// TestCoalescedUncacheableNotShared: when the shared fetch turns out to be
// personal, each waiter gets its own response from the origin.
func TestCoalescedUncacheableNotShared(t *testing.T) {
	const clients = 50
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		user := r.Header.Get("X-User")
		w.Header().Set("Cache-Control", "private")
		http.SetCookie(w, &http.Cookie{Name: "session", Value: user})
		fmt.Fprint(w, "page of "+user)
	})
	e := newEdge(t, o.URL, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	t.Cleanup(tr.CloseIdleConnections)

	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("user", i)
			req := mustRequest(t, "GET", "http://"+e.Addr()+"/me")
			req.Header.Set("X-User", user)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "page of "+user || resp.Header.Get("Set-Cookie") != "session="+user {
				errs <- fmt.Sprintf("%s got %q with Set-Cookie %q", user, b, resp.Header.Get("Set-Cookie"))
			}
		}()
	}
	testwait.Until(t, 5*time.Second, "waiters", func() bool { return e.Snapshot().Coalesced >= clients-1 })
	close(release)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

func TestPersonalPageNeverServedToAnother(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil {
			// Anonymous: a public page that also sets a tracking cookie.
			w.Header().Set("Cache-Control", "public, max-age=60")
			http.SetCookie(w, &http.Cookie{Name: "visitor", Value: "v1"})
			fmt.Fprint(w, "anonymous")
			return
		}
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprint(w, "hello "+c.Value)
	})
	e := newEdge(t, o.URL, nil)

	wantCache(t, "alice", get(t, e, "/home", "Cookie", "session=alice"), cdn.Miss, "hello alice")
	bob := get(t, e, "/home", "Cookie", "session=bob")
	wantCache(t, "bob", bob, cdn.Miss, "hello bob")
	anon := get(t, e, "/home")
	wantCache(t, "anonymous", anon, cdn.Miss, "anonymous")
	if got := anon.header.Get("Set-Cookie"); got != "visitor=v1" {
		t.Fatalf("first anonymous reader: Set-Cookie %q, want visitor=v1", got)
	}
	anon2 := get(t, e, "/home")
	wantCache(t, "second anonymous", anon2, cdn.Hit, "anonymous")
	if got := anon2.header.Get("Set-Cookie"); got != "" {
		t.Fatalf("second anonymous reader got the first one's Set-Cookie %q", got)
	}
}

func TestPassCookie(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		if c, err := r.Cookie("session"); err == nil {
			fmt.Fprint(w, "for "+c.Value)
			return
		}
		fmt.Fprint(w, "anonymous")
	})
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.PassCookie = "session" })
	wantCache(t, "anonymous", get(t, e, "/p/1"), cdn.Miss, "anonymous")
	wantCache(t, "signed in", get(t, e, "/p/1", "Cookie", "session=alice"), cdn.Miss, "for alice")
	wantCache(t, "anonymous again", get(t, e, "/p/1"), cdn.Hit, "anonymous")
}

func TestStaleIfError(t *testing.T) {
	var failing atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		// Stale at once, so the next request must go to the origin.
		w.Header().Set("Cache-Control", "max-age=0, stale-if-error=60")
		fmt.Fprint(w, "good copy")
	})
	e := newEdge(t, o.URL, nil)
	wantCache(t, "fill", get(t, e, "/s"), cdn.Miss, "good copy")
	failing.Store(true)
	wantCache(t, "origin 503", get(t, e, "/s"), cdn.Stale, "good copy")

	o.Close() // origin unreachable
	wantCache(t, "origin down", get(t, e, "/s"), cdn.Stale, "good copy")
}

func TestNoStaleIfErrorPassesError(t *testing.T) {
	var failing atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=0, must-revalidate, stale-if-error=60")
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprint(w, "good copy")
	})
	e := newEdge(t, o.URL, nil)
	get(t, e, "/s")
	failing.Store(true)
	if r := get(t, e, "/s"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("must-revalidate with a failing origin: status %d (X-Cache %s), want 503", r.status, r.cache())
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", version.Add(1))
	})
	e := newEdge(t, o.URL, nil)
	wantCache(t, "fill", get(t, e, "/swr"), cdn.Miss, "v1")
	wantCache(t, "stale", get(t, e, "/swr"), cdn.Stale, "v1")
	testwait.Until(t, 5*time.Second, "background revalidation", func() bool { return o.hits.Load() == 2 })
	testwait.Until(t, 5*time.Second, "refreshed copy", func() bool { return get(t, e, "/swr").body != "v1" })
}

func TestRevalidation(t *testing.T) {
	var version atomic.Value
	version.Store("1")
	var conditional atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("X-Version", version.Load().(string))
		if r.Header.Get("If-None-Match") == `"e1"` {
			conditional.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "body one")
	})
	e := newEdge(t, o.URL, nil)
	wantCache(t, "fill", get(t, e, "/r"), cdn.Miss, "body one")
	version.Store("2")
	r := get(t, e, "/r")
	wantCache(t, "revalidate", r, cdn.Revalidated, "body one")
	if got := conditional.Load(); got != 1 {
		t.Fatalf("conditional requests at the origin = %d, want 1", got)
	}
	if got := r.header.Get("X-Version"); got != "2" {
		t.Fatalf("X-Version after 304 = %q, want the 304's %q", got, "2")
	}
}

func TestClientConditional(t *testing.T) {
	lm := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"abc"`)
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "content")
	})
	e := newEdge(t, o.URL, nil)
	get(t, e, "/c")
	tests := []struct {
		name string
		kv   []string
		want int
	}{
		{"matching etag", []string{"If-None-Match", `"abc"`}, 304},
		{"weak matching etag", []string{"If-None-Match", `W/"abc"`}, 304},
		{"other etag", []string{"If-None-Match", `"zzz"`}, 200},
		{"not modified since", []string{"If-Modified-Since", lm}, 304},
		{"modified since", []string{"If-Modified-Since", time.Now().Add(-2 * time.Hour).UTC().Format(http.TimeFormat)}, 200},
	}
	for _, tt := range tests {
		r := get(t, e, "/c", tt.kv...)
		if r.status != tt.want || r.cache() != cdn.Hit {
			t.Errorf("%s: status %d X-Cache %q, want %d HIT", tt.name, r.status, r.cache(), tt.want)
		}
		if r.status == 304 && (r.header.Get("ETag") != `"abc"` || r.body != "") {
			t.Errorf("%s: 304 with ETag %q body %q, want the ETag and no body", tt.name, r.header.Get("ETag"), r.body)
		}
	}
	if got := o.hits.Load(); got != 1 {
		t.Fatalf("origin requests = %d, want 1", got)
	}
}

func TestVarySeparatesVariants(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "lang="+r.Header.Get("Accept-Language"))
	})
	e := newEdge(t, o.URL, nil)
	wantCache(t, "en", get(t, e, "/v", "Accept-Language", "en"), cdn.Miss, "lang=en")
	wantCache(t, "fr", get(t, e, "/v", "Accept-Language", "fr"), cdn.Miss, "lang=fr")
	wantCache(t, "none", get(t, e, "/v"), cdn.Miss, "lang=")
	wantCache(t, "en again", get(t, e, "/v", "Accept-Language", "en"), cdn.Hit, "lang=en")
	wantCache(t, "fr again", get(t, e, "/v", "Accept-Language", "fr"), cdn.Hit, "lang=fr")
	wantCache(t, "none again", get(t, e, "/v"), cdn.Hit, "lang=")
	if got := e.Snapshot().Objects; got != 3 {
		t.Fatalf("objects = %d, want 3 variants", got)
	}
	// A purge of the URL takes every variant.
	e.Purge(cdn.PurgeRequest{URLs: []string{"/v"}})
	if got := e.Snapshot().Objects; got != 0 {
		t.Fatalf("objects after purge = %d, want 0", got)
	}
}

func TestUnsafeMethodInvalidates(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			if r.URL.Path == "/p/new" {
				w.Header().Set("Location", "/p/2")
				w.WriteHeader(http.StatusCreated)
				return
			}
			if r.URL.Path == "/p/bad" {
				http.Error(w, "no", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprint(w, "page "+r.URL.Path)
		}
	})
	e := newEdge(t, o.URL, nil)
	for _, p := range []string{"/p/1", "/p/2", "/p/bad"} {
		get(t, e, p)
		wantCache(t, p, get(t, e, p), cdn.Hit, "page "+p)
	}
	do(t, e, http.MethodPost, "/p/1")
	wantCache(t, "after POST /p/1", get(t, e, "/p/1"), cdn.Miss, "page /p/1")
	do(t, e, http.MethodPost, "/p/new")
	wantCache(t, "after POST with Location /p/2", get(t, e, "/p/2"), cdn.Miss, "page /p/2")
	do(t, e, http.MethodPost, "/p/bad")
	wantCache(t, "after a failed POST", get(t, e, "/p/bad"), cdn.Hit, "page /p/bad")
}

func cacheablePages(t testing.TB) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		switch r.URL.Path {
		case "/p/42":
			w.Header().Set("Surrogate-Key", "post-42 author-7 home")
		case "/p/43":
			w.Header().Set("Surrogate-Key", "post-43 author-7")
		case "/":
			w.Header().Set("Surrogate-Key", "home")
		}
		fmt.Fprint(w, "page "+r.URL.Path)
	})
}

func fill(t testing.TB, e *cdn.Edge, paths ...string) {
	t.Helper()
	for _, p := range paths {
		get(t, e, p)
		wantCache(t, "fill "+p, get(t, e, p), cdn.Hit, "")
	}
}

func TestPurgeHTTP(t *testing.T) {
	o := cacheablePages(t)
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.PurgeToken = "s3cret" })
	fill(t, e, "/p/42", "/p/43", "/", "/about")

	purge := func(body, token string) response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+e.Addr()+"/_edge/purge", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(t, req)
	}
	if r := purge(`{"urls":["/about"]}`, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("purge without token: status %d, want 401", r.status)
	}
	if r := purge(`{"urls":["/about"]}`, "wrong"); r.status != http.StatusUnauthorized {
		t.Fatalf("purge with a wrong token: status %d, want 401", r.status)
	}
	wantCache(t, "/about after refused purge", get(t, e, "/about"), cdn.Hit, "")
	if r := purge(`{"urls":`, "s3cret"); r.status != http.StatusBadRequest {
		t.Fatalf("purge with a broken body: status %d, want 400", r.status)
	}

	r := purge(`{"keys":["author-7"]}`, "s3cret")
	if r.status != 200 || !strings.Contains(r.body, `"objects":2`) {
		t.Fatalf("purge by key: %d %s, want 200 and 2 objects", r.status, r.body)
	}
	wantCache(t, "/p/42 after key purge", get(t, e, "/p/42"), cdn.Miss, "")
	wantCache(t, "/p/43 after key purge", get(t, e, "/p/43"), cdn.Miss, "")
	wantCache(t, "/ after key purge", get(t, e, "/"), cdn.Hit, "")

	r = purge(`{"urls":["http://example.com/about"]}`, "s3cret")
	if !strings.Contains(r.body, `"objects":1`) {
		t.Fatalf("purge by absolute URL: %s, want 1 object", r.body)
	}
	wantCache(t, "/about after URL purge", get(t, e, "/about"), cdn.Miss, "")

	r = do(t, e, "PURGE", "/", "Authorization", "Bearer s3cret")
	if r.status != 200 {
		t.Fatalf("PURGE /: status %d, want 200", r.status)
	}
	wantCache(t, "/ after PURGE", get(t, e, "/"), cdn.Miss, "")
}

func TestPurgeDisabledWithoutToken(t *testing.T) {
	e := newEdge(t, cacheablePages(t).URL, nil)
	r := do(t, e, http.MethodPost, "/_edge/purge", "Authorization", "Bearer ")
	if r.status != http.StatusForbidden {
		t.Fatalf("purge with no token configured: status %d, want 403", r.status)
	}
}

func TestPurgeNATS(t *testing.T) {
	o := cacheablePages(t)
	purges := &fakePurges{}
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { d.Purges = purges })
	if got := purges.subject.Load(); got != cdn.PurgeSubject {
		t.Fatalf("subscribed to %v, want %s", got, cdn.PurgeSubject)
	}
	fill(t, e, "/p/42", "/p/43", "/", "/about")
	purges.publish(t, `{"urls":["/about"],"keys":["post-42","home"]}`)
	wantCache(t, "/about", get(t, e, "/about"), cdn.Miss, "")
	wantCache(t, "/p/42", get(t, e, "/p/42"), cdn.Miss, "")
	wantCache(t, "/", get(t, e, "/"), cdn.Miss, "")
	wantCache(t, "/p/43", get(t, e, "/p/43"), cdn.Hit, "")
	purges.publish(t, `not json`) // ignored, logged
	if got := e.Snapshot().Purges; got != 1 {
		t.Fatalf("purges = %d, want 1", got)
	}
	// "all" empties the cache.
	fill(t, e, "/p/42", "/about")
	purges.publish(t, `{"all":true}`)
	for _, p := range []string{"/p/42", "/p/43", "/about"} {
		wantCache(t, p+" after purge all", get(t, e, p), cdn.Miss, "")
	}
	wantCache(t, "/p/43 refilled", get(t, e, "/p/43"), cdn.Hit, "")
	// So does hearing that purges may have been missed (subscribing late,
	// or NATS reconnecting).
	fill(t, e, "/p/42")
	purges.miss(t)
	for _, p := range []string{"/p/42", "/p/43"} {
		wantCache(t, p+" after purges were missed", get(t, e, p), cdn.Miss, "")
	}
	e.Close()
	if !purges.stopped.Load() {
		t.Fatal("Close did not stop the purge subscription")
	}
}

// lateSubscriber subscribes in the background, as the node's NATS purges
// do, and says when it has.
type lateSubscriber struct {
	fakePurges
	done atomic.Bool
}

func (l *lateSubscriber) Subscribed() bool { return l.done.Load() }

// TestNotReadyUntilPurgesArrive: an edge whose purge subscription is not
// live yet is not ready, so nothing is sent to rely on its cache before a
// purge could reach it.
func TestNotReadyUntilPurgesArrive(t *testing.T) {
	purges := &lateSubscriber{}
	e := newEdge(t, cacheablePages(t).URL, func(c *cdn.Config, d *cdn.Deps) { d.Purges = purges })
	if e.Ready() {
		t.Fatal("Ready() = true before the purge subscription is live")
	}
	purges.done.Store(true)
	if !e.Ready() {
		t.Fatal("Ready() = false with the purge subscription live")
	}
}

func TestOversizedBodyStreamed(t *testing.T) {
	big := strings.Repeat("0123456789", 1000) // 10 000 bytes
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/chunked" {
			// No Content-Length: the edge learns the size while reading.
			for i := 0; i < len(big); i += 1000 {
				io.WriteString(w, big[i:i+1000])
				w.(http.Flusher).Flush()
			}
			return
		}
		io.WriteString(w, big)
	})
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.MaxObjectBytes = 4096 })
	for _, p := range []string{"/big", "/chunked"} {
		for i := range 2 {
			r := get(t, e, p)
			if r.cache() != cdn.Miss || r.body != big {
				t.Fatalf("GET %s #%d: X-Cache %q, %d bytes; want MISS and %d bytes", p, i+1, r.cache(), len(r.body), len(big))
			}
		}
	}
	if got := o.hits.Load(); got != 4 {
		t.Fatalf("origin requests = %d, want 4 (nothing stored)", got)
	}
	if s := e.Snapshot(); s.Objects != 0 || s.TooLarge != 4 {
		t.Fatalf("objects %d, too large %d; want 0 and 4", s.Objects, s.TooLarge)
	}
}

func TestRangeFromStoredResponse(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"r1"`)
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader("0123456789"))
	})
	e := newEdge(t, o.URL, nil)
	if r := get(t, e, "/f", "Range", "bytes=0-3"); r.status != http.StatusPartialContent || r.body != "0123" {
		t.Fatalf("uncached range: %d %q, want the origin's 206 0123", r.status, r.body)
	}
	get(t, e, "/f")
	tests := []struct {
		rng, ifRange string
		status       int
		body, cr     string
	}{
		{"bytes=2-4", "", 206, "234", "bytes 2-4/10"},
		{"bytes=7-", "", 206, "789", "bytes 7-9/10"},
		{"bytes=-2", "", 206, "89", "bytes 8-9/10"},
		{"bytes=5-100", "", 206, "56789", "bytes 5-9/10"},
		{"bytes=20-30", "", 416, "", "bytes */10"},
		{"bytes=0-1,4-5", "", 200, "0123456789", ""},
		{"bytes=2-4", `"r1"`, 206, "234", "bytes 2-4/10"},
		{"bytes=2-4", `"old"`, 200, "0123456789", ""},
	}
	for _, tt := range tests {
		kv := []string{"Range", tt.rng}
		if tt.ifRange != "" {
			kv = append(kv, "If-Range", tt.ifRange)
		}
		r := get(t, e, "/f", kv...)
		if r.status != tt.status || (tt.status != 416 && r.body != tt.body) || r.header.Get("Content-Range") != tt.cr {
			t.Errorf("Range %s If-Range %s: %d %q Content-Range %q; want %d %q %q", tt.rng, tt.ifRange, r.status, r.body, r.header.Get("Content-Range"), tt.status, tt.body, tt.cr)
		}
	}
}

func TestEvictionUnderBudget(t *testing.T) {
	body := strings.Repeat("x", 10_000)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, body)
	})
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) {
		c.MaxBytes = 50_000
		c.MaxObjectBytes = 20_000
	})
	for i := range 20 {
		get(t, e, fmt.Sprintf("/o/%d", i))
	}
	s := e.Snapshot()
	if s.Bytes > s.MaxBytes || s.Evictions == 0 || s.Objects >= 20 {
		t.Fatalf("bytes %d of %d, evictions %d, objects %d; want within budget and some evicted", s.Bytes, s.MaxBytes, s.Evictions, s.Objects)
	}
	wantCache(t, "most recent", get(t, e, "/o/19"), cdn.Hit, "")
	wantCache(t, "oldest", get(t, e, "/o/0"), cdn.Miss, "")
}

func TestOriginsRoundRobin(t *testing.T) {
	var a, b atomic.Int64
	oa := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { a.Add(1) })
	ob := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { b.Add(1) })
	e := newEdge(t, "", func(c *cdn.Config, d *cdn.Deps) {
		d.Origins = cdn.StaticOrigins{oa.Listener.Addr().String(), ob.Listener.Addr().String()}
	})
	for range 10 {
		get(t, e, "/nocache")
	}
	if a.Load() != 5 || b.Load() != 5 {
		t.Fatalf("origin requests %d and %d, want 5 and 5", a.Load(), b.Load())
	}
	if !e.Ready() {
		t.Fatal("Ready() = false with two origins")
	}
}

func TestNoOriginIsBadGateway(t *testing.T) {
	e := newEdge(t, "", func(c *cdn.Config, d *cdn.Deps) { d.Origins = cdn.StaticOrigins{} })
	if e.Ready() {
		t.Fatal("Ready() = true with no origin")
	}
	if r := get(t, e, "/"); r.status != http.StatusBadGateway {
		t.Fatalf("status %d with no origin, want 502", r.status)
	}
}

func TestOriginLatency(t *testing.T) {
	o := cacheablePages(t)
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.OriginLatency = 30 * time.Millisecond })
	start := time.Now()
	get(t, e, "/lat")
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("miss took %v, want at least the 30ms origin latency", d)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := cacheablePages(t)
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { d.Metrics = reg })
	get(t, e, "/m")
	get(t, e, "/m")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"edge_hit_ratio": 0.5, "edge_responses_total/HIT": 1, "edge_responses_total/MISS": 1,
		"edge_origin_requests_total": 1, "edge_objects": 1,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %v, want %v", name, got[name], w)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*cdn.Config)
		want string // part of the error; empty for none
	}{
		{"valid", func(c *cdn.Config) {}, ""},
		{"bad origin", func(c *cdn.Config) { c.Origin = "ftp://x" }, "Origin"},
		{"origin without host", func(c *cdn.Config) { c.Origin = "http://" }, "Origin"},
		{"zero budget", func(c *cdn.Config) { c.MaxBytes = 0 }, "MaxBytes"},
		{"object above budget", func(c *cdn.Config) { c.MaxObjectBytes = c.MaxBytes + 1 }, "MaxObjectBytes"},
		{"negative latency", func(c *cdn.Config) { c.OriginLatency = -1 }, "OriginLatency"},
		{"no addr", func(c *cdn.Config) { c.Addr = "" }, "Addr"},
		{"no name", func(c *cdn.Config) { c.NodeName = "" }, "NodeName"},
	}
	for _, tt := range tests {
		cfg := cdn.DefaultConfig()
		cfg.Origin = "http://127.0.0.1:8080"
		tt.edit(&cfg)
		err := cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

// TestNewWithoutOrigin: an edge with neither a fixed origin nor Deps.Origins
// is refused by New (Validate checks settings only).
func TestNewWithoutOrigin(t *testing.T) {
	cfg := cdn.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() of the defaults = %v, want nil", err)
	}
	if _, err := cdn.New(cfg, cdn.Deps{}); !errors.Is(err, cdn.ErrNoOrigin) {
		t.Errorf("New without Origin or Deps.Origins = %v, want ErrNoOrigin", err)
	}
}

func TestRequestDirectives(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"d1"`)
		if r.Header.Get("If-None-Match") == `"d1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "doc")
	})
	e := newEdge(t, o.URL, nil)
	if r := get(t, e, "/none", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout {
		t.Fatalf("only-if-cached of nothing stored: status %d, want 504", r.status)
	}
	get(t, e, "/d")
	wantCache(t, "only-if-cached", get(t, e, "/d", "Cache-Control", "only-if-cached"), cdn.Hit, "doc")
	wantCache(t, "request no-cache", get(t, e, "/d", "Cache-Control", "no-cache"), cdn.Revalidated, "doc")
	wantCache(t, "Pragma: no-cache", get(t, e, "/d", "Pragma", "no-cache"), cdn.Revalidated, "doc")
	wantCache(t, "request max-age=0", get(t, e, "/d", "Cache-Control", "max-age=0"), cdn.Revalidated, "doc")
	wantCache(t, "plain", get(t, e, "/d"), cdn.Hit, "doc")
	if got := o.hits.Load(); got != 4 {
		t.Fatalf("origin requests = %d, want 4 (a fill and three revalidations; only-if-cached never goes)", got)
	}
}
