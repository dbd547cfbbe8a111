package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The gateway's degraded pages (stage 10): services that are down, as their
// rpc clients report it. The stubs stand in for a service's client; the
// unit under test is what the app makes of their errors.

// errDown is what an rpc client returns when no instance of a service
// can take a call.
func errDown(service string) error {
	return fmt.Errorf("service %s: every instance (1) is failing, calls held off: %w", service, rpc.ErrUnavailable)
}

// downSearch is a search service whose every instance is down.
type downSearch struct{}

func (downSearch) Index(context.Context, string, string, []string, string) error {
	return errDown("search")
}
func (downSearch) Remove(context.Context, string) error { return errDown("search") }
func (downSearch) Query(context.Context, string, int) ([]string, error) {
	return nil, errDown("search")
}

// downNotifications is a notifications service whose every instance is down.
type downNotifications struct{}

func (downNotifications) Add(context.Context, notify.Notification, ...string) error {
	return errDown("notifications")
}
func (downNotifications) List(context.Context, string, int) ([]notify.Notification, error) {
	return nil, errDown("notifications")
}

// downComments reads no comments; the rest of the comments service works.
type downComments struct{ app.Comments }

func (downComments) List(context.Context, string) ([]comments.Comment, error) {
	return nil, errDown("content")
}

// downFeed serves posts but not the home feed.
type downFeed struct{ app.Posts }

func (downFeed) Feed(context.Context, int, int) ([]posts.Post, bool, error) {
	return nil, false, errDown("content")
}

// servicesOn returns the blog's services in-process over a fresh store,
// with change applied, and the store.
func servicesOn(tb testing.TB, change func(*app.Services)) (*app.Services, store.Store) {
	tb.Helper()
	ms := apptest.NewMemStore()
	s := app.NewServices(ms, 4)
	if change != nil {
		change(&s)
	}
	return &s, ms
}

// withServices makes the app use s instead of services over its store.
func withServices(s *app.Services) func(*app.Config, *app.Deps) {
	return func(_ *app.Config, d *app.Deps) { d.Services = s }
}

// wantUnavailable fails unless r is a 503 that says when to come back.
func wantUnavailable(tb testing.TB, what string, r response) {
	tb.Helper()
	want(tb, what, r, http.StatusServiceUnavailable)
	if got := r.Header.Get("Retry-After"); got == "" {
		tb.Errorf("%s: no Retry-After on a 503", what)
	}
}

// Search down: the search page is a page (200) saying so, not cached
// anywhere; the API answers 503 with a clear error; nothing else breaks.
func TestSearchDown(t *testing.T) {
	live, ms := servicesOn(t, nil)
	down := *live
	down.Search = downSearch{}
	s := newStackOn(t, ms, withServices(&down))
	c := s.client(t)
	c.signup("ada")
	id := c.post("Still here", "Searching is down, reading is not.", "outage")["id"].(string)

	r := s.client(t).get("/search?q=still")
	want(t, "search page with search down", r, http.StatusOK)
	wantIn(t, "search page with search down", r, "Search is unavailable right now")
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("search page with search down: Cache-Control %q, want no-store (no cache may keep the outage)", cc)
	}

	r = s.client(t).get("/api/v1/search?q=still")
	wantUnavailable(t, "API search with search down", r)
	if msg, _ := r.JSON(t)["error"].(string); !strings.Contains(msg, "search is unavailable") {
		t.Errorf("API search error = %q, want it to say search is unavailable", msg)
	}

	for _, path := range []string{"/", "/p/" + id, "/u/ada", "/t/outage", "/api/v1/posts", "/api/v1/posts/" + id} {
		want(t, path+" with search down", s.client(t).get(path), http.StatusOK)
	}
	want(t, "a new post with search down", c.json("POST", "/api/v1/posts", map[string]any{"title": "t", "body": "b"}), http.StatusCreated)
	// An empty query asks no service: the search form as ever.
	want(t, "empty search", s.client(t).get("/search"), http.StatusOK)
}

// Notifications down: the home page renders for a logged-in user, without
// the notification count it shows when the service answers; the
// notifications page, whose main data it is, is a clear 503.
func TestNotificationsDown(t *testing.T) {
	live, ms := servicesOn(t, nil)
	// One session store for both apps below, so that bob, logged in on
	// the first, is logged in on the second.
	sessions := app.NewMemorySessions()
	withSessions := func(_ *app.Config, d *app.Deps) { d.SessionStore = sessions }
	s := newStackOn(t, ms, withServices(live), withSessions)
	ada, bob := s.client(t), s.client(t)
	ada.signup("ada")
	bob.signup("bob")
	want(t, "bob follows ada", bob.json("POST", "/api/v1/users/ada/follow", nil), http.StatusNoContent)
	id := ada.post("Hello followers", "A post bob is told of.")["id"].(string)
	// Inline jobs: bob has his notification now.
	r := bob.get("/")
	want(t, "home, notifications up", r, http.StatusOK)
	wantIn(t, "home, notifications up", r, `class="count"`)

	down := *live
	down.Notifications = downNotifications{}
	s2 := newStackOn(t, ms, withServices(&down), withSessions)
	bob.base = s2.Server.URL
	r = bob.get("/")
	want(t, "home, notifications down", r, http.StatusOK)
	wantIn(t, "home, notifications down", r, "Hello followers", "@bob")
	if strings.Contains(r.String(), `class="count"`) {
		t.Errorf("home with notifications down shows a notification count")
	}
	want(t, "post page, notifications down", bob.get("/p/"+id), http.StatusOK)
	r = bob.get("/notifications")
	wantUnavailable(t, "notifications page, notifications down", r)
	wantIn(t, "notifications page, notifications down", r, "Temporarily unavailable")
	wantUnavailable(t, "notifications API, notifications down", bob.get("/api/v1/notifications"))
}

// A post whose comments cannot be read is shown without them, saying so;
// a page whose main data is down is a 503 page, never a 500.
func TestCommentsDownAndMainDataDown(t *testing.T) {
	live, ms := servicesOn(t, nil)
	down := *live
	down.Comments = downComments{live.Comments}
	down.Posts = downFeed{live.Posts}
	s := newStackOn(t, ms, withServices(&down))
	c := s.client(t)
	c.signup("ada")
	id := c.post("Comments elsewhere", "The post itself is here.")["id"].(string)

	r := s.client(t).get("/p/" + id)
	want(t, "post page with comments down", r, http.StatusOK)
	wantIn(t, "post page with comments down", r, "The post itself is here.", "Comments are unavailable right now")
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("post page with comments down: Cache-Control %q, want no-store", cc)
	}
	wantUnavailable(t, "comments API with comments down", s.client(t).get("/api/v1/posts/"+id+"/comments"))

	r = s.client(t).get("/")
	wantUnavailable(t, "home with the feed down", r)
	wantIn(t, "home with the feed down", r, "Temporarily unavailable", "a service this page needs is unavailable")
	wantUnavailable(t, "API feed with the feed down", s.client(t).get("/api/v1/posts"))
}

// The gateway: remote services (here in-process, as Deps.Services), no
// store of its own, sessions from the session store it is given. Sign-up,
// log-in, posting and commenting work, and the only jobs it enqueues are
// views: the rest are the services' events.
func TestRemoteModeWithoutStore(t *testing.T) {
	services, ms := servicesOn(t, nil)
	sessions := app.NewMemorySessions()
	q := newGatedQueue()
	q.open()
	s := openQueueStack(t, nil, q, func(cfg *app.Config, d *app.Deps) {
		cfg.ServiceMode = app.ServicesRemote
		cfg.Sessions = app.SessionsShared // a gateway ignores it: its sessions are the users service's
		d.Services, d.SessionStore = services, sessions
	})

	ada := s.client(t)
	ada.signup("ada")
	want(t, "log out", ada.json("POST", "/api/v1/logout", nil), http.StatusNoContent)
	want(t, "log in", ada.json("POST", "/api/v1/login", map[string]string{"handle": "ada", "password": "correct horse"}), http.StatusOK)
	id := ada.post("Through the gateway", "No store behind the app.")["id"].(string)
	bob := s.client(t)
	bob.signup("bob")
	want(t, "comment", bob.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "Seen."}), http.StatusCreated)
	r := bob.form("/p/"+id+"/comments", "body", "A form comment.")
	want(t, "comment form", r, http.StatusSeeOther)
	r = bob.get("/p/" + id)
	want(t, "post page", r, http.StatusOK)
	wantIn(t, "post page", r, "Seen.", "A form comment.")
	want(t, "API post", s.client(t).get("/api/v1/posts/"+id), http.StatusOK)
	want(t, "home", bob.get("/"), http.StatusOK)

	testwait.Until(t, 5*time.Second, "two view jobs", func() bool { return len(q.ids(app.JobView)) == 2 })
	q.mu.Lock()
	var kinds []string
	for _, j := range q.got {
		if !slices.Contains(kinds, j.Kind) {
			kinds = append(kinds, j.Kind)
		}
	}
	q.mu.Unlock()
	if !slices.Equal(kinds, []string{app.JobView}) {
		t.Errorf("jobs enqueued by the gateway are of kinds %v, want %v only", kinds, []string{app.JobView})
	}
	if jobs := outboxJobs(t, ms); len(jobs) != 0 {
		t.Errorf("the services' store holds %d jobs of the app's outbox, want none", len(jobs))
	}
	if got := s.App.Status().(app.Status).Services; got != "remote" {
		t.Errorf("Status().Services = %q, want remote", got)
	}
}

// Remote mode names what it misses.
func TestRemoteModeNeeds(t *testing.T) {
	services, _ := servicesOn(t, nil)
	for _, tt := range []struct {
		name string
		deps app.Deps
		want error
	}{
		{"no services", app.Deps{Store: apptest.NewMemStore(), SessionStore: app.NewMemorySessions()}, app.ErrNoServices},
		{"no session store", app.Deps{Services: services}, app.ErrNoSessionStore},
	} {
		cfg := app.DefaultConfig()
		cfg.DataDir, cfg.ServiceMode = t.TempDir(), app.ServicesRemote
		if _, err := app.New(cfg, tt.deps); !errors.Is(err, tt.want) {
			t.Errorf("%s: New = %v, want %v", tt.name, err, tt.want)
		}
	}
	cfg := app.DefaultConfig()
	cfg.ServiceMode = app.ServicesRemote
	if got := cfg.ServicesConfig().CacheTier.Group; got != app.ContentGroup {
		t.Errorf("remote ServicesConfig().CacheTier.Group = %q, want %q (posts and comments are the content group's)", got, app.ContentGroup)
	}
	var m app.ServiceMode
	if err := m.Set("elsewhere"); err == nil {
		t.Errorf(`ServiceMode.Set("elsewhere") = nil, want an error`)
	}
}

// rpcSearch queries the search service over the services' wire, as its
// own client does; indexing (the inline jobs of this test's app) goes to
// the in-process service over the same store.
type rpcSearch struct {
	app.Search
	c *rpc.Client
}

type queryReq struct {
	Q     string `json:"q"`
	Limit int    `json:"limit"`
}

type queryResp struct {
	IDs []string `json:"ids"`
}

var queryMethod = rpc.Method[queryReq, queryResp]{Name: "query", Idempotent: true}

func (s rpcSearch) Query(ctx context.Context, q string, limit int) ([]string, error) {
	resp, err := rpc.Call(ctx, s.c, queryMethod, queryReq{Q: q, Limit: limit})
	return resp.IDs, err
}

// A real hop: search served by an rpc server (an instance named search-1),
// called by the gateway through an rpc client over a static instance list.
// Its X-Served-By lists the app node then the instance; when the instance
// is gone (its server closed), the search page says search is unavailable
// and the API answers 503, while the rest of the site serves on.
func TestServedByAndSearchKilled(t *testing.T) {
	live, ms := servicesOn(t, nil)
	srv, err := rpc.NewServer(rpc.ServerConfig{Service: "search", Instance: "search-1"})
	if err != nil {
		t.Fatalf("rpc.NewServer: %v", err)
	}
	rpc.Handle(srv, queryMethod, func(ctx context.Context, req queryReq) (queryResp, error) {
		ids, err := search.New(ms).Query(ctx, req.Q, req.Limit)
		return queryResp{IDs: ids}, err
	})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	client, err := rpc.New(rpc.Config{Service: "search", Retries: -1,
		Instances: func() []rpc.Instance {
			return []rpc.Instance{{Name: "search-1", Addr: strings.TrimPrefix(hs.URL, "http://")}}
		}})
	if err != nil {
		t.Fatalf("rpc.New: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	remote := *live
	remote.Search = rpcSearch{live.Search, client}
	s := newStackOn(t, ms, withServices(&remote), func(_ *app.Config, d *app.Deps) {
		d.ServiceClients = func() []rpc.Status { return []rpc.Status{client.Status()} }
	})
	c := s.client(t)
	c.signup("ada")
	c.post("Found by search", "A word to find: kittiwake.")

	r := s.client(t).get("/search?q=kittiwake")
	want(t, "search", r, http.StatusOK)
	wantIn(t, "search", r, "Found by search")
	if got, want := r.Header.Get("X-Served-By"), "app-test, search-1"; got != want {
		t.Errorf("search: X-Served-By = %q, want %q", got, want)
	}
	r = s.client(t).get("/api/v1/search?q=kittiwake")
	want(t, "API search", r, http.StatusOK)
	if got, want := r.Header.Get("X-Served-By"), "app-test, search-1"; got != want {
		t.Errorf("API search: X-Served-By = %q, want %q", got, want)
	}
	// A page that calls no remote service is served by the app alone.
	if got := s.client(t).get("/").Header.Get("X-Served-By"); got != "app-test" {
		t.Errorf("home: X-Served-By = %q, want app-test", got)
	}

	if cs := s.App.Status().(app.Status).ServiceClients; len(cs) != 1 || cs[0].Service != "search" || cs[0].Calls == 0 ||
		len(cs[0].Instances) != 1 || cs[0].Instances[0].Name != "search-1" {
		t.Errorf("Status().ServiceClients = %+v, want the search client's calls to search-1", cs)
	}

	hs.Close() // every search instance killed
	r = s.client(t).get("/search?q=kittiwake")
	want(t, "search page, search killed", r, http.StatusOK)
	wantIn(t, "search page, search killed", r, "Search is unavailable right now")
	r = s.client(t).get("/api/v1/search?q=kittiwake")
	wantUnavailable(t, "API search, search killed", r)
	if msg, _ := r.JSON(t)["error"].(string); !strings.Contains(msg, "search is unavailable") {
		t.Errorf("API search error = %q, want it to say search is unavailable", msg)
	}
	want(t, "home, search killed", s.client(t).get("/"), http.StatusOK)
}

// serveService serves a service's methods, registered by register, as one
// instance named instance on an httptest server, and returns a client of
// it over a static instance list.
func serveService(tb testing.TB, service, instance string, codes []rpc.Code, register func(*rpc.Server)) *rpc.Client {
	tb.Helper()
	srv, err := rpc.NewServer(rpc.ServerConfig{Service: service, Instance: instance, Codes: codes})
	if err != nil {
		tb.Fatalf("rpc.NewServer(%s): %v", service, err)
	}
	register(srv)
	hs := httptest.NewServer(srv)
	tb.Cleanup(hs.Close)
	c, err := rpc.New(rpc.Config{Service: service, Codes: codes,
		Instances: func() []rpc.Instance {
			return []rpc.Instance{{Name: instance, Addr: strings.TrimPrefix(hs.URL, "http://")}}
		}})
	if err != nil {
		tb.Fatalf("rpc.New(%s): %v", service, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// The gateway over the wire: users (accounts and sessions) and content
// (posts, comments, media) are service instances with stores of their own,
// reached through their rpc clients; the app has no store. A user signs
// up, posts, comments and reads, and every answer names the instances it
// touched after the gateway.
func TestGatewayOverTheWire(t *testing.T) {
	usersStore, contentStore := apptest.NewMemStore(), apptest.NewMemStore()
	userCodes := append(slices.Clone(accounts.Codes), app.SessionCodes...)
	users := serveService(t, accounts.Name, "users-1", userCodes, func(srv *rpc.Server) {
		us := accounts.New(usersStore, 4)
		accounts.Register(srv, us, us.Outbox())
		app.RegisterSessions(srv, app.NewSharedSessions(usersStore, nil))
	})
	cont := serveService(t, content.Name, "content-1", nil, func(srv *rpc.Server) {
		content.Register(srv, content.Deps{Posts: posts.New(contentStore), Comments: comments.New(contentStore),
			Media: media.New(contentStore), Outbox: svc.OutboxOf(contentStore, content.Name)})
	})
	others := apptest.NewMemStore() // search and notifications, in-process here
	services := &app.Services{Accounts: accounts.NewClient(users), Posts: content.NewPosts(cont),
		Comments: content.NewComments(cont), Media: content.NewMedia(cont),
		Search: search.New(others), Notifications: notify.New(others)}
	q := newGatedQueue()
	q.open()
	s := openQueueStack(t, nil, q, func(cfg *app.Config, d *app.Deps) {
		cfg.ServiceMode = app.ServicesRemote
		d.Services, d.SessionStore = services, app.NewSessionsClient(users)
	})

	ada := s.client(t)
	r := ada.json("POST", "/api/v1/signup", map[string]string{"handle": "ada", "email": "ada@example.com", "password": "correct horse"})
	want(t, "sign-up", r, http.StatusCreated)
	if got, want := r.Header.Get("X-Served-By"), "app-test, users-1"; got != want {
		t.Errorf("sign-up: X-Served-By = %q, want %q", got, want)
	}
	id := ada.post("Over the wire", "Posted through the gateway.")["id"].(string)
	want(t, "comment", ada.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "First."}), http.StatusCreated)

	r = ada.get("/p/" + id)
	want(t, "post page", r, http.StatusOK)
	wantIn(t, "post page", r, "Posted through the gateway.", "First.", "@ada")
	// The post (content), then the session (users), in the order reached.
	if got, want := r.Header.Get("X-Served-By"), "app-test, content-1, users-1"; got != want {
		t.Errorf("post page: X-Served-By = %q, want %q", got, want)
	}
	r = s.client(t).get("/api/v1/posts/" + id)
	want(t, "API post, anonymous", r, http.StatusOK)
	if got, want := r.Header.Get("X-Served-By"), "app-test, content-1"; got != want {
		t.Errorf("API post: X-Served-By = %q, want %q", got, want)
	}
	want(t, "me", ada.get("/api/v1/me"), http.StatusOK)
	testwait.Until(t, 5*time.Second, "two view jobs", func() bool { return len(q.ids(app.JobView)) == 2 })
	if got := q.ids(app.JobWelcome, app.JobIndex, app.JobNotifyFollowers, app.JobCommentAdded, app.JobThumbnail); len(got) != 0 {
		t.Errorf("the gateway enqueued %d jobs of writes, want none (the services' events do their work)", len(got))
	}
}
