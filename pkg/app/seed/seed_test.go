package seed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/seed"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func newBlog(t *testing.T) *httptest.Server {
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

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
}

type feed struct {
	Posts []struct {
		Title, Author, ImageURL string
		Comments                int
	} `json:"posts"`
	Next int `json:"next"`
}

func TestRunFillsTheBlog(t *testing.T) {
	opts := seed.Options{Seed: 7, Authors: 4, Posts: 15, MaxComments: 3, Follows: 2, ImageEvery: 10}
	titles := func() string {
		srv := newBlog(t)
		var progress bytes.Buffer
		if err := seed.Run(context.Background(), srv.URL, opts, &progress); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !strings.Contains(progress.String(), "seed: done: 4 authors, 15 posts") {
			t.Errorf("progress = %q, want a done line", progress.String())
		}
		var all []string
		comments := 0
		for page := 1; page != 0; {
			var f feed
			getJSON(t, srv.URL+"/api/v1/posts?page="+itoa(page), &f)
			for _, p := range f.Posts {
				all = append(all, p.Author+": "+p.Title)
				comments += p.Comments
			}
			page = f.Next
		}
		if len(all) < 10 {
			t.Errorf("feed has %d published posts, want most of 15", len(all))
		}
		if comments == 0 {
			t.Errorf("no comments were seeded")
		}
		var u struct {
			User struct{ Following int } `json:"user"`
		}
		getJSON(t, srv.URL+"/api/v1/users/ada", &u)
		if u.User.Following != 2 {
			t.Errorf("ada follows %d authors, want 2", u.User.Following)
		}
		// Running again logs the authors in instead of failing.
		if err := seed.Run(context.Background(), srv.URL, seed.Options{Seed: 8, Authors: 4, Posts: 1}, nil); err != nil {
			t.Errorf("second Run: %v", err)
		}
		// Posts made within one millisecond may swap places in the feed;
		// the corpus, not its order to the millisecond, is what must repeat.
		slices.Sort(all)
		return strings.Join(all, "\n")
	}
	if a, b := titles(), titles(); a != b {
		t.Errorf("the same seed gave different corpora:\n%s\n---\n%s", a, b)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
