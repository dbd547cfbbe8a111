package seed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/seed"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func newBlog(t testing.TB) *httptest.Server {
	t.Helper()
	db, err := boltdb.Open(filepath.Join(t.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		t.Fatalf("boltdb.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := app.DefaultConfig()
	cfg.DataDir, cfg.BcryptCost = t.TempDir(), bcrypt.MinCost
	a, err := app.New(cfg, app.Deps{Store: db})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// user is a logged-in client of the blog.
type user struct {
	t    testing.TB
	base string
	http *http.Client
}

func login(t testing.TB, base, handle, password string) *user {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u := &user{t: t, base: base, http: &http.Client{Jar: jar}}
	b, _ := json.Marshal(map[string]string{"handle": handle, "password": password})
	resp, err := u.http.Post(base+"/api/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("login %s: %v", handle, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s with password %q: status %d, want 200", handle, password, resp.StatusCode)
	}
	return u
}

func (u *user) get(path string, v any) {
	u.t.Helper()
	resp, err := u.http.Get(u.base + path)
	if err != nil {
		u.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		u.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		u.t.Fatalf("decode %s: %v", path, err)
	}
}

type post struct {
	ID, Author, Title, Body, HTML, Excerpt, ImageURL string
	Published                                        bool
	Tags                                             []string
}

// blog is what a reader and the authors see, without ids and times: it
// must be the same after any number of runs of the same seed.
type blog struct {
	posts     []post // published and drafts, sorted
	comments  []string
	following map[string]int
}

func (b blog) String() string {
	var s strings.Builder
	for _, p := range b.posts {
		fmt.Fprintf(&s, "%s %q published=%v image=%v\n", p.Author, p.Title, p.Published, p.ImageURL != "")
	}
	fmt.Fprintf(&s, "%d comments, following %v\n", len(b.comments), b.following)
	return s.String()
}

func (b blog) equal(o blog) bool {
	return slices.EqualFunc(b.posts, o.posts, func(x, y post) bool {
		return x.Author == y.Author && x.Title == y.Title && x.Body == y.Body && x.Published == y.Published &&
			(x.ImageURL == "") == (y.ImageURL == "") && slices.Equal(x.Tags, y.Tags)
	}) && slices.Equal(b.comments, o.comments) && fmt.Sprint(b.following) == fmt.Sprint(o.following)
}

// read reads the whole blog, logged in as each of handles to see drafts.
func read(t testing.TB, base string, handles []string) blog {
	t.Helper()
	b := blog{following: map[string]int{}}
	for _, h := range handles {
		u := login(t, base, h, seed.DefaultPassword)
		for page := 1; page != 0; {
			var out struct {
				User          struct{ Following int }
				Posts, Drafts []post
				Next          int
			}
			u.get(fmt.Sprintf("/api/v1/users/%s?page=%d", h, page), &out)
			b.following[h] = out.User.Following
			for _, p := range append(out.Posts, out.Drafts...) {
				b.posts = append(b.posts, p)
				if !p.Published {
					continue
				}
				var cs struct {
					Comments []struct{ Author, Body string }
				}
				u.get("/api/v1/posts/"+p.ID+"/comments", &cs)
				for _, c := range cs.Comments {
					b.comments = append(b.comments, p.Author+"/"+p.Title+": "+c.Author+": "+c.Body)
				}
			}
			page = out.Next
		}
	}
	slices.SortFunc(b.posts, func(x, y post) int { return strings.Compare(x.Author+x.Title+x.Body, y.Author+y.Title+y.Body) })
	slices.Sort(b.comments)
	return b
}

func run(t testing.TB, base string, opts seed.Options) (seed.Summary, string) {
	t.Helper()
	var progress bytes.Buffer
	sum, err := seed.Run(context.Background(), base, opts, &progress)
	if err != nil {
		t.Fatalf("Run(seed %d, %d posts): %v\n%s", opts.Seed, opts.Posts, err, progress.String())
	}
	return sum, progress.String()
}

var small = seed.Options{Seed: 7, Authors: 4, Posts: 24, MaxComments: 3, Follows: 2, ImageEvery: 24, Drafts: 0.2}

func TestRunTwiceWritesTheBlogOnce(t *testing.T) {
	srv := newBlog(t)
	first, progress := run(t, srv.URL, small)
	if first.Written != 24 || first.Skipped != 0 || first.NewAuthors != 4 || first.Images != 1 || first.Follows != 8 {
		t.Errorf("first run: %+v, want 24 posts written, 4 new authors, 1 cover, 8 follows", first)
	}
	for _, want := range []string{"seed: done in", "24 posts (24 written, 0 there already;", "seed: posts 10/24"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress lacks %q:\n%s", want, progress)
		}
	}
	before := read(t, srv.URL, first.Handles)
	if len(before.posts) != 24 || len(before.comments) != first.Comments || first.Comments == 0 {
		t.Fatalf("the blog has %d posts and %d comments, want 24 and %d (and some)", len(before.posts), len(before.comments), first.Comments)
	}
	if drafts := 24 - first.Published; drafts == 0 {
		t.Errorf("no drafts among 24 posts with a share of 0.2")
	}

	second, progress := run(t, srv.URL, small)
	if second.Written != 0 || second.Skipped != 24 || second.CommentsWritten != 0 || second.Images != 0 || second.NewAuthors != 0 {
		t.Errorf("second run: %+v, want nothing written", second)
	}
	if !strings.Contains(progress, "24 posts (0 written, 24 there already;") {
		t.Errorf("second run's progress lacks the skipped posts:\n%s", progress)
	}
	if after := read(t, srv.URL, first.Handles); !before.equal(after) {
		t.Errorf("the second run changed the blog:\n%s---\n%s", before, after)
	}

	// More posts add only the missing ones; another seed adds its own.
	more := small
	more.Posts = 30
	if sum, _ := run(t, srv.URL, more); sum.Written != 6 || sum.Skipped != 24 {
		t.Errorf("run with 30 posts: %d written, %d skipped, want 6 and 24", sum.Written, sum.Skipped)
	}
	other := small
	other.Seed, other.Posts = 8, 5
	if sum, _ := run(t, srv.URL, other); sum.Written != 5 || sum.NewAuthors != 0 {
		t.Errorf("run with another seed: %d written, %d new authors, want 5 and 0", sum.Written, sum.NewAuthors)
	}
	if got := len(read(t, srv.URL, first.Handles).posts); got != 35 {
		t.Errorf("the blog has %d posts, want 24+6+5 = 35", got)
	}
}

// lossyTransport carries out every request but, from the n-th one on,
// loses the answer of each: as if the seed was killed with writes in
// flight.
type lossyTransport struct {
	n, sent atomic.Int64
}

var errLost = errors.New("answer lost")

func (l *lossyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && l.sent.Add(1) >= l.n.Load() {
		resp.Body.Close()
		return nil, errLost
	}
	return resp, err
}

func TestRunCompletesAnInterruptedRun(t *testing.T) {
	whole := newBlog(t)
	sum, _ := run(t, whole.URL, small)
	want := read(t, whole.URL, sum.Handles)

	// Interrupt a run at several points, each after a write the blog made
	// but the seed never heard of (a sign-up, a follow, post 0 before its
	// cover is uploaded, its cover, comments, later posts); the next run
	// must give the same blog.
	for _, at := range []int64{5, 17, 18, 30, 60} {
		srv := newBlog(t)
		lossy := &lossyTransport{}
		lossy.n.Store(at)
		opts := small
		opts.Client = &http.Client{Transport: lossy}
		if _, err := seed.Run(context.Background(), srv.URL, opts, nil); !errors.Is(err, errLost) {
			t.Fatalf("Run losing answers from request %d: %v, want %v", at, err, errLost)
		}
		second, _ := run(t, srv.URL, small)
		if got := read(t, srv.URL, sum.Handles); !got.equal(want) {
			t.Errorf("interrupted at request %d, then run again: the blog differs from one run in one go:\n%s---\n%s", at, got, want)
		}
		if second.Skipped == 0 && at > 20 {
			t.Errorf("interrupted at request %d: the second run found no post of the first", at)
		}
	}
}

var sentenceEnd = regexp.MustCompile(`[.!?:]$`)

func TestPostsReadLikePosts(t *testing.T) {
	srv := newBlog(t)
	opts := seed.Options{Seed: 3, Authors: 6, Posts: 40, MaxComments: 2, ImageEvery: -1}
	sum, progress := run(t, srv.URL, opts)

	// The password printed logs in.
	m := regexp.MustCompile(`log in as (\w+) \(or any author listed above\) with password (\S+)`).FindStringSubmatch(progress)
	if m == nil {
		t.Fatalf("progress does not say how to log in:\n%s", progress)
	}
	login(t, srv.URL, m[1], m[2])

	var titles []string
	for _, f := range must(filepath.Glob("corpus/topic-*.txt")) {
		text := string(must(os.ReadFile(f)))
		section := text[strings.Index(text, "== titles\n")+len("== titles\n"):]
		section = section[:strings.Index(section, "\n== ")]
		for _, l := range strings.Split(strings.TrimSpace(section), "\n") {
			title, _, _ := strings.Cut(l, " | ")
			titles = append(titles, title, title+" (part 2)")
		}
	}
	for _, p := range read(t, srv.URL, sum.Handles).posts {
		if !slices.Contains(titles, p.Title) {
			t.Errorf("post title %q is not one of the corpus's", p.Title)
		}
		if strings.Contains(p.HTML, "seed-3-post") || strings.Contains(p.Excerpt, "seed-3-post") {
			t.Errorf("post %q shows its seed key: excerpt %q", p.Title, p.Excerpt)
		}
		if !strings.Contains(p.HTML, "<p>") || len(p.Excerpt) < 200 {
			t.Errorf("post %q: html %.80q, excerpt %q: want paragraphs and an excerpt of 200 bytes or more", p.Title, p.HTML, p.Excerpt)
		}
		for _, block := range strings.Split(p.Body, "\n\n") {
			if strings.ContainsAny(block[:1], "#-|>`*[0123456789") {
				continue // a heading, list, table, quote, code, signature or key
			}
			if !sentenceEnd.MatchString(block) {
				t.Errorf("post %q has a paragraph that is not sentences: %q", p.Title, block)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
