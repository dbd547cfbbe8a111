package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
)

// blogUser is a person using the blog's JSON API with their own cookies.
type blogUser struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newUser(t *testing.T, base string) *blogUser {
	jar, _ := cookiejar.New(nil)
	return &blogUser{t: t, base: base, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// do sends a JSON request and decodes the answer into out; it returns the
// status code.
func (u *blogUser) do(method, path string, body any, out any) int {
	u.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u.base+path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			u.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func (u *blogUser) must(want int, method, path string, body, out any) {
	u.t.Helper()
	if got := u.do(method, path, body, out); got != want {
		u.t.Fatalf("%s %s = %d, want %d", method, path, got, want)
	}
}

type apiPost struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Author   string   `json:"author"`
	Tags     []string `json:"tags"`
	Comments int      `json:"comments"`
}

// Stage 2: the app and the primary as two processes. The app finds the
// primary through membership, answers 503 while it is dead, and recovers by
// itself when it returns, with nothing acknowledged lost.
func TestStage2BlogSurvivesPrimaryKill(t *testing.T) {
	dbFlags, dbAdmin, _, _ := ports(t, "127.0.0.1")
	dbData := t.TempDir()
	dbArgs := append([]string{"--roles", "primary", "--name", "db-1", "--data", dbData}, dbFlags...)
	db := startNode(t, dbArgs...)
	waitReady(t, dbAdmin)
	gossip := "127.0.0.1:" + flagValue(dbFlags, "--gossip-port")

	appFlags, appAdmin, _, appAddr := ports(t, "127.0.0.1")
	startNode(t, append([]string{"--roles", "app", "--name", "app-1", "--data", t.TempDir(), "--join", gossip, "--bcrypt-cost", "4"}, appFlags...)...)
	waitReady(t, appAdmin)
	base := "http://" + appAddr

	ann, bob := newUser(t, base), newUser(t, base)
	ann.must(201, "POST", "/api/v1/signup", map[string]string{"handle": "ann", "email": "ann@example.com", "password": "correct horse"}, nil)
	bob.must(201, "POST", "/api/v1/signup", map[string]string{"handle": "bob", "email": "bob@example.com", "password": "battery staple"}, nil)

	var created struct{ Post apiPost }
	ann.must(201, "POST", "/api/v1/posts", map[string]any{"title": "Scaling a blog", "body": "Start with *one* server and a zebra.", "tags": []string{"scaling"}, "published": true}, &created)
	id := created.Post.ID
	bob.must(201, "POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "Nice post!"}, nil)
	bob.must(204, "POST", "/api/v1/users/ann/follow", nil, nil)

	check := func(when string) {
		t.Helper()
		var got struct{ Post apiPost }
		bob.must(200, "GET", "/api/v1/posts/"+id, nil, &got)
		if got.Post.Title != "Scaling a blog" || got.Post.Author != "ann" {
			t.Fatalf("%s: post = %+v", when, got.Post)
		}
		var cs struct{ Comments []struct{ Body string } }
		bob.must(200, "GET", "/api/v1/posts/"+id+"/comments", nil, &cs)
		if len(cs.Comments) != 1 || cs.Comments[0].Body != "Nice post!" {
			t.Fatalf("%s: comments = %+v, want bob's one comment", when, cs.Comments)
		}
		var feed struct{ Posts []apiPost }
		bob.must(200, "GET", "/api/v1/feed/following", nil, &feed)
		if len(feed.Posts) != 1 || feed.Posts[0].ID != id {
			t.Fatalf("%s: bob's following feed = %+v, want ann's post", when, feed.Posts)
		}
		var found struct{ Posts []apiPost }
		bob.must(200, "GET", "/api/v1/search?q=zebra", nil, &found)
		if len(found.Posts) != 1 || found.Posts[0].ID != id {
			t.Fatalf("%s: search for zebra = %+v, want ann's post", when, found.Posts)
		}
		var notes struct{ Notifications []json.RawMessage }
		ann.must(200, "GET", "/api/v1/notifications", nil, &notes)
		if len(notes.Notifications) == 0 {
			t.Fatalf("%s: ann has no notification of bob's comment", when)
		}
	}
	check("before the kill")

	db.cmd.Process.Signal(syscall.SIGKILL)
	<-db.done
	// The app answers 503 with a clear message while the database is away.
	testwait.RetryUntil(t, 15*time.Second, func() error {
		resp, err := http.Get(base + "/api/v1/posts/" + id)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 {
			return fmt.Errorf("GET post with the primary dead = %d, want 503", resp.StatusCode)
		}
		if !strings.Contains(strings.ToLower(string(b)), "database") {
			return fmt.Errorf("503 body %q does not say the database is unreachable", b)
		}
		return nil
	})

	startNode(t, dbArgs...)
	waitReady(t, dbAdmin)
	testwait.RetryUntil(t, 20*time.Second, func() error {
		resp, err := http.Get(base + "/api/v1/posts/" + id)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET post after the primary came back = %d", resp.StatusCode)
		}
		return nil
	})
	check("after kill -9 and restart of the primary")
}

func flagValue(flags []string, name string) string {
	for i := range flags {
		if flags[i] == name {
			return flags[i+1]
		}
	}
	return ""
}
