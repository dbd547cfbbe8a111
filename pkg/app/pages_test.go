package app_test

import (
	"context"
	"errors"
	"html"
	"net/http"
	neturl "net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/posts"
)

// wantIn fails unless the page body contains every one of subs.
func wantIn(tb testing.TB, what string, r response, subs ...string) {
	tb.Helper()
	for _, s := range subs {
		if !strings.Contains(r.String(), s) {
			tb.Errorf("%s: page lacks %q", what, s)
		}
	}
}

func TestPublicPages(t *testing.T) {
	s := newStack(t)
	alice := s.client(t)
	alice.signup("alice")
	p := alice.post("A day at the lake", "We **swam**.\n\n- cold\n- clear", "travel")
	id := p["id"].(string)
	anon := s.client(t)

	for _, tc := range []struct {
		path string
		keys []string
		subs []string
	}{
		{"/", []string{"home", "post-" + id, "author-alice"}, []string{"Latest posts", "A day at the lake", `href="/p/` + id + `"`, "#travel"}},
		{"/p/" + id, []string{"post-" + id, "author-alice"}, []string{"<h1>A day at the lake", "<strong>swam</strong>", "<li>cold</li>", "Log in</a> to comment"}},
		{"/u/alice", []string{"author-alice", "post-" + id}, []string{"@alice", "0 followers", "A day at the lake"}},
		{"/t/travel", []string{"tag-travel", "post-" + id}, []string{"Posts tagged #travel", "A day at the lake"}},
		{"/search?q=lake", []string{"search"}, []string{"1 post for", "A day at the lake"}},
	} {
		r := anon.get(tc.path)
		want(t, tc.path, r, http.StatusOK)
		wantIn(t, tc.path, r, tc.subs...)
		wantIn(t, tc.path, r, `name="viewport"`, "Sign up")
		h := r.Header
		if got := h.Get("Cache-Control"); got != "public, max-age=0, s-maxage=10" {
			t.Errorf("%s Cache-Control = %q, want public with s-maxage", tc.path, got)
		}
		for _, k := range tc.keys {
			if !strings.Contains(" "+h.Get("Surrogate-Key")+" ", " "+k+" ") {
				t.Errorf("%s Surrogate-Key = %q, want it to hold %s", tc.path, h.Get("Surrogate-Key"), k)
			}
		}
		if h.Get("X-Served-By") != "app-test" || h.Get("X-Store") == "" || h.Get("X-Store-LSN") == "" {
			t.Errorf("%s path headers: X-Served-By %q X-Store %q X-Store-LSN %q", tc.path, h.Get("X-Served-By"), h.Get("X-Store"), h.Get("X-Store-LSN"))
		}
		if h.Get("Vary") != "Cookie" || h.Get("ETag") == "" {
			t.Errorf("%s Vary %q ETag %q, want Cookie and an ETag", tc.path, h.Get("Vary"), h.Get("ETag"))
		}
	}
	// Revalidation: the home page does not change between two reads.
	r := anon.get("/")
	want(t, "home revalidated", anon.get("/", "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)

	// The same pages for a logged-in user are personal.
	r = alice.get("/")
	want(t, "home logged in", r, http.StatusOK)
	wantIn(t, "home logged in", r, "@alice", "Log out", "Write")
	if got := r.Header.Get("Cache-Control"); got != "private, no-store" {
		t.Errorf("logged-in Cache-Control = %q, want private, no-store", got)
	}
	if r.Header.Get("Surrogate-Key") != "" {
		t.Errorf("logged-in page has a Surrogate-Key")
	}
	r = alice.get("/p/" + id)
	wantIn(t, "own post", r, `href="/p/`+id+`/edit"`, `action="/p/`+id+`/delete"`, `name="body"`)
}

func TestStaticAssets(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	page := c.get("/").String()
	for _, re := range []string{`/static/style\.[0-9a-f]{12}\.css`, `/static/app\.[0-9a-f]{12}\.js`} {
		url := regexp.MustCompile(re).FindString(page)
		if url == "" {
			t.Fatalf("home page links no %s", re)
		}
		r := c.get(url)
		want(t, url, r, http.StatusOK)
		if got := r.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("%s Cache-Control = %q, want immutable", url, got)
		}
		if len(r.Body) == 0 {
			t.Errorf("%s is empty", url)
		}
	}
	want(t, "unknown asset", c.get("/static/style.000000000000.css"), http.StatusNotFound)
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("home page refers to another site (fonts, scripts?)")
	}
}

func TestFormsFlow(t *testing.T) {
	s := newStack(t)
	alice, bob := s.client(t), s.client(t)

	want(t, "signup page", alice.get("/signup"), http.StatusOK)
	r := alice.form("/signup", "handle", "a b", "email", "nope", "password", "short")
	want(t, "signup with bad fields", r, http.StatusBadRequest)
	wantIn(t, "signup errors", r, `id="handle-error"`, "The handle may use only letters", `value="a b"`, `aria-invalid="true"`)
	r = alice.form("/signup", "handle", "alice", "email", "alice@example.com", "password", "correct horse")
	want(t, "signup", r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/u/alice" {
		t.Errorf("signup redirects to %q, want /u/alice", loc)
	}
	r = bob.form("/signup", "handle", "ALICE", "email", "b@example.com", "password", "correct horse")
	want(t, "signup with a taken handle", r, http.StatusConflict)
	wantIn(t, "taken handle", r, "The handle is taken.")
	want(t, "signup bob", bob.form("/signup", "handle", "bob", "email", "bob@example.com", "password", "correct horse"), http.StatusSeeOther)

	// Write a post with a cover image through the form.
	want(t, "new post page", alice.get("/new"), http.StatusOK)
	r = alice.multipart("/new", nil, "title", "", "body", "text", "tags", "x")
	want(t, "new post without title", r, http.StatusBadRequest)
	wantIn(t, "title error", r, `id="title-error"`, "The title is required.")
	r = alice.multipart("/new", []byte("plain text, not a picture"), "title", "T", "body", "B", "published", "1")
	want(t, "new post with a broken image", r, http.StatusUnsupportedMediaType)
	wantIn(t, "image error", r, "PNG, JPEG or GIF")
	r = alice.multipart("/new", pngImage(t, 640, 480), "title", "From the form", "body", "Hello *there*.", "tags", "go, web", "published", "1")
	want(t, "new post", r, http.StatusSeeOther)
	loc := r.Header.Get("Location")
	id := strings.TrimPrefix(loc, "/p/")
	page := bob.get(loc)
	want(t, "post page", page, http.StatusOK)
	wantIn(t, "post page", page, "From the form", "<em>there</em>", `src="/media/`, "#web")

	// Comment, with a validation error first.
	r = bob.form(loc+"/comments", "body", "")
	want(t, "empty comment", r, http.StatusBadRequest)
	wantIn(t, "comment error", r, `id="body-error"`)
	r = bob.form(loc+"/comments", "body", "Lovely")
	want(t, "comment", r, http.StatusSeeOther)
	wantIn(t, "comment shown", bob.get(loc), "Lovely", "1 comment")

	// Follow, then see the following feed and notifications.
	want(t, "follow", bob.form("/u/alice/follow"), http.StatusSeeOther)
	wantIn(t, "author page when following", bob.get("/u/alice"), "Unfollow @alice", "1 follower")
	alice.multipart("/new", nil, "title", "Second", "body", "More.", "published", "1")
	r = bob.get("/following")
	want(t, "following page", r, http.StatusOK)
	wantIn(t, "following page", r, "Second", "From the form")
	if got := r.Header.Get("Cache-Control"); got != "private, no-store" {
		t.Errorf("following Cache-Control = %q, want private, no-store", got)
	}
	wantIn(t, "bob's notifications", bob.get("/notifications"), "published <a href=")
	wantIn(t, "alice's notifications", alice.get("/notifications"), "@bob</a> commented on")
	want(t, "unfollow", bob.form("/u/alice/unfollow"), http.StatusSeeOther)

	// Edit: another user may not; the author may, and may save a draft.
	want(t, "edit page of another", bob.get(loc+"/edit"), http.StatusForbidden)
	want(t, "edit form of another", bob.multipart(loc+"/edit", nil, "title", "Mine"), http.StatusForbidden)
	r = alice.get(loc + "/edit")
	want(t, "edit page", r, http.StatusOK)
	wantIn(t, "edit page", r, `value="From the form"`, "go, web", "checked")
	r = alice.multipart(loc+"/edit", nil, "title", "Edited", "body", "New body.", "tags", "go")
	want(t, "edit to draft", r, http.StatusSeeOther)
	want(t, "draft seen by bob", bob.get(loc), http.StatusNotFound)
	wantIn(t, "alice's drafts", alice.get("/u/alice"), "Your drafts", "Edited")

	// Delete: another user may not.
	want(t, "delete by another", bob.form(loc+"/delete"), http.StatusNotFound)
	r = alice.form(loc + "/delete")
	want(t, "delete", r, http.StatusSeeOther)
	want(t, "deleted post", alice.get("/p/"+id), http.StatusNotFound)

	// Log out, and the personal pages send you to log in.
	want(t, "logout", alice.form("/logout"), http.StatusSeeOther)
	r = alice.get("/notifications")
	want(t, "notifications when logged out", r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/login?next=%2Fnotifications" {
		t.Errorf("redirect to %q, want the login page with next", loc)
	}
	r = alice.form("/login", "handle", "alice", "password", "wrong password", "next", "/notifications")
	want(t, "login with a wrong password", r, http.StatusUnauthorized)
	wantIn(t, "login error", r, "wrong handle or password", `value="alice"`)
	r = alice.form("/login", "handle", "alice", "password", "correct horse", "next", "//evil.example/")
	want(t, "login", r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/" {
		t.Errorf("login redirects to %q, want / (no open redirect)", loc)
	}
	r = alice.do("POST", "/login", "application/json", strings.NewReader(`{}`))
	want(t, "login form as JSON", r, http.StatusUnsupportedMediaType)
	r = alice.do("POST", "/login", "application/x-www-form-urlencoded", strings.NewReader("handle="+strings.Repeat("a", 300<<10)))
	want(t, "oversized form", r, http.StatusRequestEntityTooLarge)
}

func TestNotFoundPages(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	for _, path := range []string{"/nope", "/p/0000000000000", "/u/nobody", "/t/bad%20tag", "/?page=x", "/media/x.png"} {
		r := c.get(path)
		want(t, path, r, http.StatusNotFound)
		wantIn(t, path, r, "Page not found", "Back to the home page")
		if strings.Contains(r.String(), "bucket") || strings.Contains(r.String(), "store") {
			t.Errorf("%s: 404 page mentions internals: %s", path, r.Body)
		}
	}
}

// brokenPosts fails every feed read with an error full of internals.
type brokenPosts struct{ app.Posts }

func (brokenPosts) Feed(context.Context, int, int) ([]posts.Post, bool, error) {
	return nil, false, errors.New("open /var/lib/secret/store.db: bucket posts.feed: disk on fire")
}

func TestServerErrorDoesNotLeak(t *testing.T) {
	var s *stack
	s = newStack(t, func(c *app.Config, d *app.Deps) {
		svcs := app.NewServices(d.Store, c.BcryptCost)
		svcs.Posts = brokenPosts{svcs.Posts}
		d.Services = &svcs
	})
	for _, path := range []string{"/", "/api/v1/posts"} {
		r := s.client(t).get(path)
		want(t, path, r, http.StatusInternalServerError)
		if strings.Contains(r.String(), "secret") || strings.Contains(r.String(), "fire") {
			t.Errorf("%s: 500 leaks the error: %s", path, r.Body)
		}
		wantIn(t, path, r, "something went wrong on our side")
	}
	if st := s.App.Status().(app.Status); st.Errors != 2 {
		t.Errorf("Status().Errors = %d, want 2", st.Errors)
	}
}

func TestStoreUnavailable(t *testing.T) {
	s, ms := newMemStack(t)
	c := s.client(t)
	c.signup("alice")
	id := c.post("Up", "Body.")["id"].(string)

	ms.SetDown(true)
	r := s.client(t).get("/")
	want(t, "home while the store is down", r, http.StatusServiceUnavailable)
	wantIn(t, "503 page", r, "The database is unreachable", "retrying")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	r = c.json("POST", "/api/v1/posts", map[string]any{"title": "t", "body": "b"})
	want(t, "write while the store is down", r, http.StatusServiceUnavailable)
	if msg := r.JSON(t)["error"].(string); !strings.Contains(msg, "database is unreachable") {
		t.Errorf("503 JSON error = %q", msg)
	}

	ms.SetDown(false)
	want(t, "home after the store is back", s.client(t).get("/"), http.StatusOK)
	want(t, "post after the store is back", s.client(t).get("/api/v1/posts/"+id), http.StatusOK)
	want(t, "session survives", c.get("/api/v1/me"), http.StatusOK)
}

// After logging in, the form's next sends the user on only within the site:
// values a browser would read as another host (the probe of issue 15 was
// next=/\t/evil.example, answered with that Location) send them home.
func TestLoginNextStaysOnSite(t *testing.T) {
	s := newStack(t)
	s.client(t).signup("nora")
	for _, tt := range []struct{ next, want string }{
		{"/\t/evil.example", "/"},
		{"//evil.example", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"/%09/evil", "/"},
		{"/posts/1?x=y", "/posts/1?x=y"},
	} {
		c := s.client(t)
		r := c.form("/login", "handle", "nora", "password", "correct horse", "next", tt.next)
		want(t, "login with next "+tt.next, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != tt.want {
			t.Errorf("login with next=%q redirects to %q, want %q", tt.next, loc, tt.want)
		}
		page := c.get("/login?next=" + neturl.QueryEscape(tt.next))
		if want := `name="next" value="` + html.EscapeString(tt.want) + `"`; !strings.Contains(page.String(), want) {
			t.Errorf("GET /login?next=%q: the form lacks %s", tt.next, want)
		}
	}
}
