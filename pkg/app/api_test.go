package app_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/posts"
)

func TestSignupLoginLogout(t *testing.T) {
	s := newStack(t)
	c := s.client(t)

	r := c.json("POST", "/api/v1/signup", map[string]string{"handle": "Alice", "email": "alice@example.com", "password": "correct horse"})
	want(t, "signup", r, http.StatusCreated)
	u := r.JSON(t)["user"].(map[string]any)
	if got, want := u["handle"], "alice"; got != want {
		t.Errorf("signup handle = %v, want %v (handles are lower-cased)", got, want)
	}
	if u["email"] != "alice@example.com" || u["id"] == "" {
		t.Errorf("signup user = %v, want id and own e-mail", u)
	}
	cookie := r.Header.Get("Set-Cookie")
	for _, attr := range []string{"blog_session=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("Set-Cookie %q lacks %s", cookie, attr)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("Set-Cookie %q is Secure over plain HTTP", cookie)
	}

	r = c.get("/api/v1/me")
	want(t, "me", r, http.StatusOK)
	if got := r.JSON(t)["user"].(map[string]any)["handle"]; got != "alice" {
		t.Errorf("me handle = %v, want alice", got)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
		t.Errorf("me Cache-Control = %q, want private", cc)
	}

	want(t, "logout", c.json("POST", "/api/v1/logout", nil), http.StatusNoContent)
	want(t, "me after logout", c.get("/api/v1/me"), http.StatusUnauthorized)

	r = c.json("POST", "/api/v1/login", map[string]string{"handle": "alice", "password": "wrong password"})
	want(t, "login with a wrong password", r, http.StatusUnauthorized)
	r = c.json("POST", "/api/v1/login", map[string]string{"handle": "nobody", "password": "correct horse"})
	want(t, "login of an unknown handle", r, http.StatusUnauthorized)
	r = c.json("POST", "/api/v1/login", map[string]string{"handle": "ALICE", "password": "correct horse"})
	want(t, "login", r, http.StatusOK)
	if got := r.JSON(t)["user"].(map[string]any)["email"]; got != "alice@example.com" {
		t.Errorf("login user email = %v, want alice@example.com", got)
	}
	want(t, "me after login", c.get("/api/v1/me"), http.StatusOK)

	// Over TLS (as told by a proxy in front) the cookie is Secure.
	r = s.client(t).json("POST", "/api/v1/login", map[string]string{"handle": "alice", "password": "correct horse"}, "X-Forwarded-Proto", "https")
	want(t, "login over https", r, http.StatusOK)
	if cookie := r.Header.Get("Set-Cookie"); !strings.Contains(cookie, "Secure") {
		t.Errorf("Set-Cookie over https %q is not Secure", cookie)
	}
}

func TestSignupBadInput(t *testing.T) {
	s := newStack(t)
	s.client(t).signup("taken")
	for _, tc := range []struct {
		name      string
		ctype     string
		body      string
		code      int
		wantField string
	}{
		{"missing handle", "application/json", `{"email":"a@example.com","password":"long enough"}`, 400, "handle"},
		{"bad handle", "application/json", `{"handle":"no spaces","email":"a@example.com","password":"long enough"}`, 400, "handle"},
		{"missing email", "application/json", `{"handle":"bob","password":"long enough"}`, 400, "email"},
		{"bad email", "application/json", `{"handle":"bob","email":"not-an-address","password":"long enough"}`, 400, "email"},
		{"short password", "application/json", `{"handle":"bob","email":"b@example.com","password":"short"}`, 400, "password"},
		{"taken handle", "application/json", `{"handle":"TAKEN","email":"other@example.com","password":"long enough"}`, 409, "handle"},
		{"taken email", "application/json", `{"handle":"other","email":"taken@example.com","password":"long enough"}`, 409, "email"},
		{"wrong type", "application/json", `{"handle":7}`, 400, "handle"},
		{"not JSON", "application/json", `{"handle":`, 400, ""},
		{"two values", "application/json", `{} {}`, 400, ""},
		{"form body", "application/x-www-form-urlencoded", `handle=bob`, 415, ""},
		{"no content type", "", `{}`, 415, ""},
		{"oversized", "application/json", `{"handle":"` + strings.Repeat("x", 300<<10) + `"}`, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.client(t).do("POST", "/api/v1/signup", tc.ctype, strings.NewReader(tc.body))
			want(t, "signup", r, tc.code)
			m := r.JSON(t)
			if m["error"] == "" {
				t.Errorf("error body %v has no message", m)
			}
			if tc.wantField != "" && m["field"] != tc.wantField {
				t.Errorf("field = %v, want %s (body %v)", m["field"], tc.wantField, m)
			}
		})
	}
}

func TestWelcomeEmail(t *testing.T) {
	s := newStack(t)
	s.client(t).signup("carol")
	files, _ := filepathGlob(s.Outbox, "*.eml")
	if len(files) != 1 {
		t.Fatalf("outbox has %d .eml files, want 1", len(files))
	}
	body := readFile(t, files[0])
	for _, want := range []string{"To: carol <carol@example.com>", "Subject: Welcome", "Message-ID: <"} {
		if !strings.Contains(body, want) {
			t.Errorf("welcome e-mail lacks %q:\n%s", want, body)
		}
	}
}

func TestPostLifecycle(t *testing.T) {
	s := newStack(t)
	alice, bob, anon := s.client(t), s.client(t), s.client(t)
	alice.signup("alice")
	bob.signup("bob")

	p := alice.post("Hello", "First *post*.", "Go", "intro")
	id := p["id"].(string)
	if !regexp.MustCompile(`^[0-9a-z]{13}$`).MatchString(id) {
		t.Errorf("post id %q is not short and URL-safe", id)
	}
	if got, want := p["html"], "<p>First <em>post</em>.</p>\n"; got != want {
		t.Errorf("html = %q, want %q", got, want)
	}
	if got := fmt.Sprint(p["tags"]); got != "[go intro]" {
		t.Errorf("tags = %s, want [go intro]", got)
	}
	for _, k := range []string{"id", "author", "title", "body", "html", "tags", "published", "created_at", "updated_at", "views", "comments", "image_url", "thumb_url"} {
		if _, ok := p[k]; !ok {
			t.Errorf("post JSON lacks %q: %v", k, p)
		}
	}

	// Each read counts a view.
	want(t, "get", anon.get("/api/v1/posts/"+id), http.StatusOK)
	r := anon.get("/api/v1/posts/" + id)
	if got := r.JSON(t)["post"].(map[string]any)["views"]; got != 1.0 {
		t.Errorf("views after two reads = %v, want 1 (the second read sees the first)", got)
	}

	// Only the author edits or deletes.
	r = bob.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "Mine now"})
	want(t, "edit another's post", r, http.StatusForbidden)
	want(t, "delete another's post", bob.json("DELETE", "/api/v1/posts/"+id, nil), http.StatusForbidden)
	want(t, "anonymous edit", anon.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "x"}), http.StatusUnauthorized)

	r = alice.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "Hello again", "tags": []string{"go"}})
	want(t, "edit", r, http.StatusOK)
	p = r.JSON(t)["post"].(map[string]any)
	if p["title"] != "Hello again" || p["body"] != "First *post*." {
		t.Errorf("after edit post = %v, want new title and old body", p)
	}
	r = alice.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": ""})
	want(t, "edit to an empty title", r, http.StatusBadRequest)
	if f := r.JSON(t)["field"]; f != "title" {
		t.Errorf("field = %v, want title", f)
	}

	// The tag page follows the edit.
	if got := len(anon.get("/api/v1/tags/intro").JSON(t)["posts"].([]any)); got != 0 {
		t.Errorf("tag intro has %d posts after the tag was removed, want 0", got)
	}
	if got := len(anon.get("/api/v1/tags/go").JSON(t)["posts"].([]any)); got != 1 {
		t.Errorf("tag go has %d posts, want 1", got)
	}

	// Drafts are the author's alone.
	r = alice.json("PUT", "/api/v1/posts/"+id, map[string]any{"published": false})
	want(t, "unpublish", r, http.StatusOK)
	want(t, "draft seen by another", anon.get("/api/v1/posts/"+id), http.StatusNotFound)
	want(t, "draft seen by its author", alice.get("/api/v1/posts/"+id), http.StatusOK)
	if got := len(anon.get("/api/v1/posts").JSON(t)["posts"].([]any)); got != 0 {
		t.Errorf("feed has %d posts while the only one is a draft, want 0", got)
	}
	want(t, "edit another's draft", bob.json("PUT", "/api/v1/posts/"+id, map[string]any{"title": "x"}), http.StatusNotFound)
	if ds, _ := alice.get("/api/v1/users/alice").JSON(t)["drafts"].([]any); len(ds) != 1 || ds[0].(map[string]any)["id"] != id {
		t.Errorf("alice's own user page has drafts %v, want her one draft %s", ds, id)
	}
	for who, c := range map[string]*client{"bob": bob, "anonymous": anon} {
		if ds, ok := c.get("/api/v1/users/alice").JSON(t)["drafts"]; ok {
			t.Errorf("alice's user page shows %s the drafts %v, want none", who, ds)
		}
	}

	want(t, "delete", alice.json("DELETE", "/api/v1/posts/"+id, nil), http.StatusNoContent)
	want(t, "get deleted", alice.get("/api/v1/posts/"+id), http.StatusNotFound)
	want(t, "get malformed id", anon.get("/api/v1/posts/..%2f..%2fetc"), http.StatusNotFound)
	want(t, "delete again", alice.json("DELETE", "/api/v1/posts/"+id, nil), http.StatusNotFound)
}

func TestCreatePostBadInput(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	want(t, "anonymous create", c.json("POST", "/api/v1/posts", map[string]any{"title": "t", "body": "b"}), http.StatusUnauthorized)
	c.signup("dave")
	for _, tc := range []struct {
		name  string
		in    map[string]any
		code  int
		field string
	}{
		{"missing title", map[string]any{"body": "b"}, 400, "title"},
		{"missing body", map[string]any{"title": "t"}, 400, "body"},
		{"long title", map[string]any{"title": strings.Repeat("t", posts.MaxTitle+1), "body": "b"}, 400, "title"},
		{"long body", map[string]any{"title": "t", "body": strings.Repeat("b", posts.MaxBody+1)}, 413, "body"},
		{"bad tag", map[string]any{"title": "t", "body": "b", "tags": []string{"no spaces allowed"}}, 400, "tags"},
		{"too many tags", map[string]any{"title": "t", "body": "b", "tags": strings.Fields("a b c d e f g h i")}, 400, "tags"},
		{"tags not a list", map[string]any{"title": "t", "body": "b", "tags": "go"}, 400, "tags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.json("POST", "/api/v1/posts", tc.in)
			want(t, "create", r, tc.code)
			if f := r.JSON(t)["field"]; f != tc.field {
				t.Errorf("field = %v, want %s", f, tc.field)
			}
		})
	}
	r := c.do("POST", "/api/v1/posts", "text/plain", strings.NewReader(`{"title":"t","body":"b"}`))
	want(t, "create as text/plain", r, http.StatusUnsupportedMediaType)
}

func TestMarkdownIsSafe(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	c.signup("mallory")
	body := "Hi <script>alert(1)</script>\n\n<div onclick=\"steal()\">x</div>\n\n[click](javascript:alert(2)) <img src=x onerror=alert(3)>"
	p := c.post("XSS", body)
	html := p["html"].(string)
	live := regexp.MustCompile(`<(script|div|img)\b|href="javascript:`)
	if m := live.FindString(html); m != "" {
		t.Errorf("rendered HTML has live %q: %s", m, html)
	}
	if !strings.Contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("raw HTML is not shown escaped: %s", html)
	}
	page := s.client(t).get("/p/" + p["id"].(string)).String()
	if m := regexp.MustCompile(`<script>|<div onclick|href="javascript:|<img src=x`).FindString(page); m != "" {
		t.Errorf("post page carries %q:\n%s", m, page)
	}
}

func TestImageUpload(t *testing.T) {
	s := newStack(t)
	alice, bob := s.client(t), s.client(t)
	alice.signup("alice")
	bob.signup("bob")
	id := alice.post("Pictures", "See the cover.")["id"].(string)
	img := pngImage(t, 960, 640)

	r := alice.multipart("/api/v1/posts/"+id+"/image", img)
	want(t, "upload", r, http.StatusOK)
	p := r.JSON(t)["post"].(map[string]any)
	imageURL, thumbURL := p["image_url"].(string), p["thumb_url"].(string)
	if !regexp.MustCompile(`^/media/[0-9a-f]{32}\.png$`).MatchString(imageURL) {
		t.Fatalf("image_url = %q, want /media/<hash>.png", imageURL)
	}
	if thumbURL == "" || thumbURL == imageURL {
		t.Fatalf("thumb_url = %q, want a thumbnail of its own", thumbURL)
	}

	r = s.client(t).get(imageURL)
	want(t, "get image", r, http.StatusOK)
	if !bytes.Equal(r.Body, img) {
		t.Errorf("image bytes differ from the upload (%d vs %d bytes)", len(r.Body), len(img))
	}
	if got := r.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
		t.Errorf("image Cache-Control = %q, want immutable", got)
	}
	if got := r.Header.Get("Content-Type"); got != "image/png" {
		t.Errorf("image Content-Type = %q, want image/png", got)
	}
	want(t, "revalidate image", s.client(t).get(imageURL, "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)

	r = s.client(t).get(thumbURL)
	want(t, "get thumbnail", r, http.StatusOK)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("decode thumbnail: %v", err)
	}
	if cfg.Width != 480 || cfg.Height != 320 {
		t.Errorf("thumbnail is %dx%d, want 480x320", cfg.Width, cfg.Height)
	}

	// Same bytes again: same URL (content-addressed).
	r = alice.multipart("/api/v1/posts/"+id+"/image", img)
	want(t, "upload again", r, http.StatusOK)
	if got := r.JSON(t)["post"].(map[string]any)["image_url"]; got != imageURL {
		t.Errorf("image_url of the same bytes = %v, want %v", got, imageURL)
	}

	want(t, "upload to another's post", bob.multipart("/api/v1/posts/"+id+"/image", img), http.StatusForbidden)
	want(t, "upload text", alice.multipart("/api/v1/posts/"+id+"/image", []byte("just some text, not an image")), http.StatusUnsupportedMediaType)
	want(t, "upload without file", alice.multipart("/api/v1/posts/"+id+"/image", nil), http.StatusBadRequest)
	want(t, "upload as JSON", alice.json("POST", "/api/v1/posts/"+id+"/image", map[string]string{"image": "x"}), http.StatusUnsupportedMediaType)
	big := append(bytes.Clone(img), make([]byte, 6<<20)...)
	want(t, "upload too large", alice.multipart("/api/v1/posts/"+id+"/image", big), http.StatusRequestEntityTooLarge)
	want(t, "missing image", s.client(t).get("/media/0123456789abcdef0123456789abcdef.png"), http.StatusNotFound)
	want(t, "malformed image name", s.client(t).get("/media/..%2fstore.db"), http.StatusNotFound)
}

func TestFeedPagination(t *testing.T) {
	s := newStack(t, func(c *appConfig, _ *appDeps) { c.PageSize = 10 })
	c := s.client(t)
	c.signup("writer")
	for i := 1; i <= 25; i++ {
		c.post(fmt.Sprintf("Post %02d", i), "Body.")
	}
	anon := s.client(t)
	for _, tc := range []struct {
		page, n, next int
		first         string
	}{{1, 10, 2, "Post 25"}, {2, 10, 3, "Post 15"}, {3, 5, 0, "Post 05"}, {4, 0, 0, ""}} {
		m := anon.get(fmt.Sprintf("/api/v1/posts?page=%d", tc.page)).JSON(t)
		ps := m["posts"].([]any)
		if len(ps) != tc.n || m["next"] != float64(tc.next) || m["page"] != float64(tc.page) {
			t.Errorf("page %d: %d posts, next %v, page %v; want %d, %d", tc.page, len(ps), m["next"], m["page"], tc.n, tc.next)
		}
		if tc.n > 0 && ps[0].(map[string]any)["title"] != tc.first {
			t.Errorf("page %d starts with %v, want %s", tc.page, ps[0].(map[string]any)["title"], tc.first)
		}
	}
	want(t, "page=abc", anon.get("/api/v1/posts?page=abc"), http.StatusBadRequest)
	want(t, "page=0", anon.get("/api/v1/posts?page=0"), http.StatusBadRequest)
	m := anon.get("/api/v1/users/writer?page=3").JSON(t)
	if got := len(m["posts"].([]any)); got != 5 {
		t.Errorf("author page 3 has %d posts, want 5", got)
	}
}

func TestFollowFeedAndNotifications(t *testing.T) {
	s := newStack(t)
	alice, bob := s.client(t), s.client(t)
	alice.signup("alice")
	bob.signup("bob")

	want(t, "anonymous follow", s.client(t).json("POST", "/api/v1/users/alice/follow", nil), http.StatusUnauthorized)
	want(t, "follow", bob.json("POST", "/api/v1/users/alice/follow", nil), http.StatusNoContent)
	want(t, "follow twice", bob.json("POST", "/api/v1/users/alice/follow", nil), http.StatusNoContent)
	want(t, "follow nobody", bob.json("POST", "/api/v1/users/nobody/follow", nil), http.StatusNotFound)
	want(t, "follow self", bob.json("POST", "/api/v1/users/bob/follow", nil), http.StatusBadRequest)

	m := s.client(t).get("/api/v1/users/alice").JSON(t)
	u := m["user"].(map[string]any)
	if u["followers"] != 1.0 || u["following"] != 0.0 {
		t.Errorf("alice followers/following = %v/%v, want 1/0", u["followers"], u["following"])
	}
	if _, ok := u["email"]; ok {
		t.Errorf("user JSON shows the e-mail to others: %v", u)
	}

	p := alice.post("News", "Something happened.")
	feed := bob.get("/api/v1/feed/following").JSON(t)["posts"].([]any)
	if len(feed) != 1 || feed[0].(map[string]any)["id"] != p["id"] {
		t.Fatalf("bob's following feed = %v, want alice's post", feed)
	}
	ns := bob.get("/api/v1/notifications").JSON(t)["notifications"].([]any)
	if len(ns) != 1 || ns[0].(map[string]any)["kind"] != "post" || ns[0].(map[string]any)["actor"] != "alice" {
		t.Fatalf("bob's notifications = %v, want one post by alice", ns)
	}

	// A comment tells the post's author, and is counted on the post.
	r := bob.json("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", map[string]string{"body": "Nice <b>one</b>"})
	want(t, "comment", r, http.StatusCreated)
	if got := r.JSON(t)["comment"].(map[string]any)["author"]; got != "bob" {
		t.Errorf("comment author = %v, want bob", got)
	}
	alice.json("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", map[string]string{"body": "Thanks"})
	cs := s.client(t).get("/api/v1/posts/" + p["id"].(string) + "/comments").JSON(t)["comments"].([]any)
	if len(cs) != 2 || cs[0].(map[string]any)["body"] != "Nice <b>one</b>" {
		t.Errorf("comments = %v, want bob's then alice's", cs)
	}
	ns = alice.get("/api/v1/notifications").JSON(t)["notifications"].([]any)
	if len(ns) != 1 || ns[0].(map[string]any)["kind"] != "comment" {
		t.Errorf("alice's notifications = %v, want one comment (not her own)", ns)
	}
	got := s.client(t).get("/api/v1/posts/" + p["id"].(string)).JSON(t)["post"].(map[string]any)["comments"]
	if got != 2.0 {
		t.Errorf("post comments = %v, want 2", got)
	}
	if page := s.client(t).get("/p/" + p["id"].(string)).String(); !strings.Contains(page, "Nice &lt;b&gt;one&lt;/b&gt;") {
		t.Errorf("post page does not show the comment escaped")
	}

	want(t, "empty comment", bob.json("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", map[string]string{"body": "  "}), http.StatusBadRequest)
	want(t, "long comment", bob.json("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", map[string]string{"body": strings.Repeat("x", 5000)}), http.StatusRequestEntityTooLarge)
	want(t, "comment on nothing", bob.json("POST", "/api/v1/posts/0000000000000/comments", map[string]string{"body": "hi"}), http.StatusNotFound)
	want(t, "anonymous comment", s.client(t).json("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", map[string]string{"body": "hi"}), http.StatusUnauthorized)

	want(t, "unfollow", bob.json("DELETE", "/api/v1/users/alice/follow", nil), http.StatusNoContent)
	if feed := bob.get("/api/v1/feed/following").JSON(t)["posts"].([]any); len(feed) != 0 {
		t.Errorf("feed after unfollow has %d posts, want 0", len(feed))
	}
	want(t, "anonymous feed", s.client(t).get("/api/v1/feed/following"), http.StatusUnauthorized)
	want(t, "anonymous notifications", s.client(t).get("/api/v1/notifications"), http.StatusUnauthorized)
}

func TestSearchAndTags(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	c.signup("sam")
	a := c.post("Scaling Postgres", "Replication and **failover** in practice.", "databases")
	b := c.post("Caching at the edge", "A CDN in front of the load balancer.", "cdn", "databases")
	draft := c.json("POST", "/api/v1/posts", map[string]any{"title": "Secret failover plan", "body": "Draft.", "published": false})
	want(t, "draft", draft, http.StatusCreated)

	anon := s.client(t)
	ids := func(path string) []string {
		t.Helper()
		r := anon.get(path)
		want(t, path, r, http.StatusOK)
		var out []string
		for _, p := range r.JSON(t)["posts"].([]any) {
			out = append(out, p.(map[string]any)["id"].(string))
		}
		return out
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/api/v1/search?q=failover", []string{a["id"].(string)}},
		{"/api/v1/search?q=FAILOVER+replication", []string{a["id"].(string)}},
		{"/api/v1/search?q=databases", []string{b["id"].(string), a["id"].(string)}},
		{"/api/v1/search?q=edge+postgres", nil},
		{"/api/v1/search?q=", nil},
		{"/api/v1/tags/databases", []string{b["id"].(string), a["id"].(string)}},
		{"/api/v1/tags/CDN", []string{b["id"].(string)}},
		{"/api/v1/tags/nothing", nil},
	} {
		if got := ids(tc.path); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.path, got, tc.want)
		}
	}
	want(t, "long query", anon.get("/api/v1/search?q="+strings.Repeat("a", 300)), http.StatusBadRequest)

	c.json("DELETE", "/api/v1/posts/"+a["id"].(string), nil)
	if got := ids("/api/v1/search?q=failover"); len(got) != 0 {
		t.Errorf("search after delete = %v, want nothing", got)
	}
}

func TestCrossSiteRequestsRefused(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	c.signup("victim")
	p := c.post("Mine", "Body.")
	for _, tc := range []struct {
		name, method, path, ctype, body string
		header                          []string
	}{
		{"api delete from another site", "DELETE", "/api/v1/posts/" + p["id"].(string), "", "", []string{"Sec-Fetch-Site", "cross-site"}},
		{"api post with foreign origin", "POST", "/api/v1/posts", "application/json", `{"title":"t","body":"b"}`, []string{"Origin", "https://evil.example"}},
		{"form logout from another site", "POST", "/logout", "application/x-www-form-urlencoded", "", []string{"Sec-Fetch-Site", "cross-site"}},
		{"form comment from another site", "POST", "/p/" + p["id"].(string) + "/comments", "application/x-www-form-urlencoded", "body=spam", []string{"Origin", "http://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.path, tc.ctype, strings.NewReader(tc.body), tc.header...)
			want(t, tc.name, r, http.StatusForbidden)
			if !strings.Contains(r.String(), "cross-site") {
				t.Errorf("403 body does not explain: %s", r.Body)
			}
		})
	}
	// The post is still there; same-origin browser requests pass.
	r := c.do("GET", "/api/v1/posts/"+p["id"].(string), "", nil)
	want(t, "post survives", r, http.StatusOK)
	r = c.do("POST", "/api/v1/posts/"+p["id"].(string)+"/comments", "application/json", strings.NewReader(`{"body":"ok"}`), "Sec-Fetch-Site", "same-origin")
	want(t, "same-origin comment", r, http.StatusCreated)
}

func TestUnknownAPIRoute(t *testing.T) {
	s := newStack(t)
	r := s.client(t).get("/api/v1/nope")
	want(t, "unknown route", r, http.StatusNotFound)
	if r.JSON(t)["error"] == nil {
		t.Errorf("404 body = %s, want a JSON error", r.Body)
	}
}

// Password rules at sign-up (8 to 72 bytes, not a common one, not the
// handle), and a log-in with more than 72 bytes refused even when its first
// 72 are the password (bcrypt reads no further).
func TestPasswordRules(t *testing.T) {
	s := newStack(t)
	for _, tt := range []struct {
		name, handle, password string
		code                   int
	}{
		{"7 bytes", "seven", "7 bytes", http.StatusBadRequest},
		{"73 bytes", "seventythree", strings.Repeat("x", 72) + "y", http.StatusBadRequest},
		{"common", "commoner", "password1", http.StatusBadRequest},
		{"common, other case", "commoner", "Qwerty123", http.StatusBadRequest},
		{"one character repeated", "repeater", "aaaaaaaa", http.StatusBadRequest},
		{"the handle", "samename", "samename", http.StatusBadRequest},
		{"good", "gooduser", "violet kettle drum", http.StatusCreated},
		{"good, 72 bytes", "longuser", strings.Repeat("long enough ", 6), http.StatusCreated},
	} {
		r := s.client(t).json("POST", "/api/v1/signup", map[string]string{"handle": tt.handle, "email": tt.handle + "@example.com", "password": tt.password})
		want(t, "signup with a password "+tt.name, r, tt.code)
		if tt.code == http.StatusBadRequest {
			if got := r.JSON(t)["field"]; got != "password" {
				t.Errorf("signup with a password %s: field %v, want password", tt.name, got)
			}
		}
	}
	long := strings.Repeat("long enough ", 6)
	c := s.client(t)
	want(t, "login with the 72-byte password", c.json("POST", "/api/v1/login", map[string]string{"handle": "longuser", "password": long}), http.StatusOK)
	r := c.json("POST", "/api/v1/login", map[string]string{"handle": "longuser", "password": long + "and more"})
	want(t, "login with the 72-byte password and more after it", r, http.StatusUnauthorized)
}

// bombPNG is a PNG of a few dozen bytes that declares a w×h image of 16-bit
// RGBA pixels (8 bytes each), with no pixel data after its header.
func bombPNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 16, 6 // 16 bits, RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c})
	chunk("IEND", nil)
	return b.Bytes()
}

// The probe of issue 15 uploaded a 308 KB PNG of 6300×6300 16-bit pixels,
// under the 40-megapixel cap: its decode (the thumbnail, inline) took
// 5.7 s and 400 MB. Such an image is now refused at upload from its
// header, with 413 naming the image, and nothing is decoded: the request
// allocates a few megabytes, not the 317 MB the bitmap would take.
func TestUploadDecompressionBomb(t *testing.T) {
	s := newStack(t)
	alice := s.client(t)
	alice.signup("alice")
	id := alice.post("Cover", "x")["id"].(string)
	bomb := bombPNG(6300, 6300)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := alice.multipart("/api/v1/posts/"+id+"/image", bomb)
	runtime.ReadMemStats(&after)
	want(t, "upload a decompression bomb", r, http.StatusRequestEntityTooLarge)
	if got := r.JSON(t)["field"]; got != "image" {
		t.Errorf("the 413 names field %v, want image", got)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("the refused upload allocated %d MiB, want it refused before any decode", grew>>20)
	}
	if img := alice.get("/api/v1/posts/" + id).JSON(t)["post"].(map[string]any)["image_url"]; img != "" {
		t.Errorf("the post's image_url is %v after a refused upload, want none", img)
	}
}
