package posts_test

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func TestMarkdown(t *testing.T) {
	md := posts.NewMarkdown()
	for _, tc := range []struct{ in, want string }{
		{"**bold** and _em_", "<p><strong>bold</strong> and <em>em</em></p>\n"},
		{"<b>raw</b>", "<p>&lt;b&gt;raw&lt;/b&gt;</p>\n"},
		{"<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"},
		{"[x](javascript:alert(1))", `<p><a href="">x</a></p>` + "\n"},
		{"~~gone~~", "<p><del>gone</del></p>\n"},
		{"https://example.com", `<p><a href="https://example.com">https://example.com</a></p>` + "\n"},
	} {
		got, err := md.Render(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Render(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// live matches what would run in a browser: tags that load or run code,
// event handler attributes, and script URLs. Markdown images are fine.
var live = regexp.MustCompile(`(?i)<(script|iframe|object|embed|style|svg|div|form|input|link|meta|base)\b|\son[a-z]+\s*=|(href|src)="\s*(javascript|vbscript|data:text)`)

// FuzzMarkdown checks that no input makes the renderer emit a live tag,
// an event handler attribute or a script link.
func FuzzMarkdown(f *testing.F) {
	for _, s := range []string{"<script>x</script>", "<img src=x onerror=y>", "[a](javascript:b)", "`<b>`", "<div\n\nonclick=x>", "![x](data:text/html,y)"} {
		f.Add(s)
	}
	md := posts.NewMarkdown()
	f.Fuzz(func(t *testing.T, src string) {
		got, err := md.Render(src)
		if err != nil {
			return
		}
		// Attributes inside escaped text are harmless; look only at tags.
		for _, tag := range regexp.MustCompile(`<[^>]*>`).FindAllString(got, -1) {
			if live.MatchString(tag) {
				t.Fatalf("Render(%q) has a live tag %q in %q", src, tag, got)
			}
		}
	})
}

func TestNormalizeTag(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Go", "go", true}, {"#load-balancing", "load-balancing", true}, {" db_2 ", "db_2", true},
		{"", "", false}, {"two words", "", false}, {"<b>", "", false}, {strings.Repeat("x", 33), "", false},
	} {
		got, ok := posts.NormalizeTag(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeTag(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// Views counted concurrently on one post all land (compare-and-set retries),
// and a view job counted twice counts once.
func TestConcurrentViews(t *testing.T) {
	db, err := boltdb.Open(filepath.Join(t.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		t.Fatalf("boltdb.Open: %v", err)
	}
	defer db.Close()
	ctx := context.Background()
	s := posts.New(db)
	p, err := s.Create(ctx, posts.Draft{AuthorID: "u", Author: "a", Title: "T", Body: "B", Published: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if err := s.AddView(ctx, p.ID, fmt.Sprintf("job-%d-%d", g, i)); err != nil {
					t.Errorf("AddView: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.AddView(ctx, p.ID, "job-0-0"); err != nil {
		t.Fatalf("AddView again: %v", err)
	}
	got, err := s.Get(ctx, p.ID)
	if err != nil || got.Views != 30 {
		t.Fatalf("Views = %d, %v; want 30", got.Views, err)
	}
}

// A caller's outbox for a posts.Change sees each write's post before and
// after, from the attempt that commits; an outbox for a Post still sees
// the post as written.
func TestChangeOutbox(t *testing.T) {
	db, err := boltdb.Open(filepath.Join(t.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		t.Fatalf("boltdb.Open: %v", err)
	}
	defer db.Close()
	s := posts.New(db)
	var last posts.Change
	ctx := svc.WithOutbox(context.Background(), func(c posts.Change) []store.Op { last = c; return nil })

	p, err := s.Create(ctx, posts.Draft{AuthorID: "u", Author: "a", Title: "T", Body: "B"})
	if err != nil {
		t.Fatal(err)
	}
	if last.Before.ID != "" || last.After.ID != p.ID || last.After.Published {
		t.Errorf("Create: change %+v, want before none, after the draft %s", last, p.ID)
	}
	yes := true
	if _, err := s.Update(ctx, p.ID, posts.Patch{Published: &yes}); err != nil {
		t.Fatal(err)
	}
	if last.Before.Published || !last.After.Published || last.Before.ID != p.ID {
		t.Errorf("publish: change before published %v, after %v; want false, true", last.Before.Published, last.After.Published)
	}
	if err := s.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if last.Before.ID != p.ID || !last.Before.Published || last.After.ID != "" {
		t.Errorf("Delete: change %+v, want before the post, after none", last)
	}

	var written posts.Post
	pctx := svc.WithOutbox(context.Background(), func(p posts.Post) []store.Op { written = p; return nil })
	q, err := s.Create(pctx, posts.Draft{AuthorID: "u", Author: "a", Title: "T2", Body: "B"})
	if err != nil || written.ID != q.ID {
		t.Errorf("an outbox for a Post saw %q, want %q (%v)", written.ID, q.ID, err)
	}
}
