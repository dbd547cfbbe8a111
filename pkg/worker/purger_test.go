package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/cdn/purge"
	"github.com/scalestack/scalestack/pkg/worker"
)

// openPurger opens a Purger to the env's NATS server and waits until it is
// connected.
func (e *env) openPurger(t testing.TB, repeat time.Duration) *worker.Purger {
	t.Helper()
	pc := worker.DefaultPurgerConfig()
	pc.Repeat = repeat
	p, err := worker.NewPurger(pc, worker.PurgerDeps{NATS: func() []string { return []string{e.nats.ClientURL()} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	testwait.RetryUntil(t, 10*time.Second, func() error { // purger connected
		if !p.Status().(worker.PurgerStatus).Connected {
			return fmt.Errorf("not connected")
		}
		return nil
	})
	return p
}

// purgeListener is an edge's subscription to the purge subject.
type purgeListener chan *nats.Msg

func (e *env) listenPurges(t testing.TB) purgeListener {
	t.Helper()
	nc, err := nats.Connect(e.nats.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(purge.Subject, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// next returns the next purge, failing after a second.
func (l purgeListener) next(t testing.TB, after string) app.Purge {
	t.Helper()
	select {
	case m := <-l:
		var p app.Purge
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatalf("purge after %s: %q: %v", after, m.Data, err)
		}
		return p
	case <-time.After(time.Second):
		t.Fatalf("no purge within a second after %s", after)
		return app.Purge{}
	}
}

// none fails if a purge arrives within d.
func (l purgeListener) none(t testing.TB, d time.Duration, after string) {
	t.Helper()
	select {
	case m := <-l:
		t.Fatalf("unexpected purge after %s: %s", after, m.Data)
	case <-time.After(d):
	}
}

func wantKeys(t testing.TB, what string, got app.Purge, keys []string, urls []string) {
	t.Helper()
	for _, k := range keys {
		if !slices.Contains(got.Keys, k) {
			t.Errorf("%s: purge keys %q, want %s among them", what, got.Keys, k)
		}
	}
	for _, u := range urls {
		if !slices.Contains(got.URLs, u) {
			t.Errorf("%s: purge urls %q, want %s among them", what, got.URLs, u)
		}
	}
}

// TestAppPurgesOverNATS: the app's writes publish the keys of the pages
// they changed on scalestack.purge, through a real NATS server, as the
// edge expects them.
func TestAppPurgesOverNATS(t *testing.T) {
	e := newEnv(t)
	purges := e.listenPurges(t)
	purger := e.openPurger(t, 0)
	cfg := app.DefaultConfig()
	cfg.NodeName, cfg.DataDir, cfg.BcryptCost = "app-1", t.TempDir(), 4
	a, err := app.New(cfg, app.Deps{Store: e.client, Purger: purger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	alice, bob := newAPIClient(t, srv.URL), newAPIClient(t, srv.URL)
	alice.call("POST", "/api/v1/signup", map[string]any{"handle": "alice", "email": "a@example.com", "password": "correct horse"}, http.StatusCreated)
	bob.call("POST", "/api/v1/signup", map[string]any{"handle": "bob", "email": "b@example.com", "password": "correct horse"}, http.StatusCreated)
	purges.none(t, 200*time.Millisecond, "sign-ups")

	created := alice.call("POST", "/api/v1/posts", map[string]any{"title": "First", "body": "Hello.", "tags": []string{"go"}, "published": true}, http.StatusCreated)
	id := created["post"].(map[string]any)["id"].(string)
	wantKeys(t, "create", purges.next(t, "create"), []string{"post-" + id, "author-alice", "home", "tag-go", "search"}, []string{"/p/" + id})

	alice.call("PUT", "/api/v1/posts/"+id, map[string]any{"title": "First, edited", "tags": []string{"go", "nats"}}, http.StatusOK)
	wantKeys(t, "edit", purges.next(t, "edit"), []string{"post-" + id, "author-alice", "home", "tag-go", "tag-nats", "search"}, []string{"/p/" + id})

	bob.call("POST", "/api/v1/posts/"+id+"/comments", map[string]any{"body": "Nice."}, http.StatusCreated)
	// The comment itself, then the comment count of the inline job.
	wantKeys(t, "comment", purges.next(t, "comment"), []string{"post-" + id}, []string{"/p/" + id})
	wantKeys(t, "comment count", purges.next(t, "comment count"), []string{"post-" + id}, nil)

	bob.call("POST", "/api/v1/users/alice/follow", nil, http.StatusNoContent)
	wantKeys(t, "follow", purges.next(t, "follow"), []string{"author-alice", "author-bob"}, []string{"/u/alice", "/u/bob"})

	alice.call("DELETE", "/api/v1/posts/"+id, nil, http.StatusNoContent)
	wantKeys(t, "delete", purges.next(t, "delete"), []string{"post-" + id, "author-alice", "home", "tag-go", "tag-nats"}, []string{"/p/" + id})

	if st := purger.Status().(worker.PurgerStatus); st.Sent < 6 || st.Dropped != 0 {
		t.Errorf("purger status %+v, want at least 6 sent and none dropped", st)
	}
}

// TestPurgerRepeatsAndDropsWithoutNATS: a purge is sent again after
// Repeat; without a NATS server it is dropped and nothing blocks.
func TestPurgerRepeatsAndDropsWithoutNATS(t *testing.T) {
	e := newEnv(t)
	purges := e.listenPurges(t)
	p := e.openPurger(t, 100*time.Millisecond)
	p.Purge(t.Context(), app.Purge{Keys: []string{"post-1"}})
	for i := 1; i <= 2; i++ {
		wantKeys(t, fmt.Sprintf("send %d", i), purges.next(t, "a purge"), []string{"post-1"}, nil)
	}

	lone, err := worker.NewPurger(worker.DefaultPurgerConfig(), worker.PurgerDeps{NATS: func() []string { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := lone.Open(); err != nil {
		t.Fatal(err)
	}
	defer lone.Close()
	// Without a connection purges are held, up to the queue's bound, to
	// be sent once NATS is reached; beyond the bound they are dropped.
	lone.Purge(t.Context(), app.Purge{Keys: []string{"home"}})
	if st := lone.Status().(worker.PurgerStatus); st.Pending != 1 || st.Dropped != 0 || st.Sent != 0 || st.Connected {
		t.Errorf("purger without NATS after one purge: status %+v, want 1 pending", st)
	}
	for range 2000 {
		lone.Purge(t.Context(), app.Purge{Keys: []string{"home"}})
	}
	if st := lone.Status().(worker.PurgerStatus); st.Dropped == 0 || st.Pending+int(st.Dropped) != 2001 {
		t.Errorf("purger without NATS after 2001 purges: status %+v, want the queue full and the rest dropped", st)
	}
	if !lone.Ready() {
		t.Errorf("purger without NATS: Ready() = false, want true (purges are best effort)")
	}
}

// apiClient is a JSON API user with its own cookies.
type apiClient struct {
	t    testing.TB
	base string
	http *http.Client
}

func newAPIClient(t testing.TB, base string) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (c *apiClient) call(method, path string, in any, code int) map[string]any {
	c.t.Helper()
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			c.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, c.base+path, &body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != code {
		c.t.Fatalf("%s %s: status %d, want %d; body %v", method, path, resp.StatusCode, code, out)
	}
	return out
}
