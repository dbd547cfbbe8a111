package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/worker"
)

// TestNewNeedsDeps: the dependencies are New's to check, not Validate's.
func TestNewNeedsDeps(t *testing.T) {
	cfg := testConfig(t.TempDir())
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil without any dependency", err)
	}
	if _, err := worker.New(cfg, worker.Deps{NATS: func() []string { return nil }}); !errors.Is(err, worker.ErrNoStore) {
		t.Errorf("New without a store = %v, want ErrNoStore", err)
	}
	if _, err := worker.New(cfg, worker.Deps{Store: apptest.NewMemStore()}); !errors.Is(err, worker.ErrNoNATS) {
		t.Errorf("New without NATS = %v, want ErrNoNATS", err)
	}
	cfg.Blog.BcryptCost = 99
	if err := cfg.Validate(); err == nil {
		t.Error("Validate() with Blog.BcryptCost 99 = nil, want an error")
	}
}

// recordingPurger keeps the purges it is given.
type recordingPurger struct {
	mu     sync.Mutex
	purges []app.Purge
}

func (r *recordingPurger) Purge(_ context.Context, p app.Purge) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purges = append(r.purges, p)
}

func (r *recordingPurger) hasURL(u string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.purges {
		if slices.Contains(p.URLs, u) {
			return true
		}
	}
	return false
}

// TestWorkerWritesPurge: the worker runs the blog's service stack as
// Config.Blog says, so the comment count it writes purges the post's page
// at the edges through Deps.Purger, as the app's writes do; with
// Blog.Purge off it purges nothing.
func TestWorkerWritesPurge(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("purge=%v", on), func(t *testing.T) {
			e := newEnv(t)
			ctx := ctxT(t)
			rec := &recordingPurger{}
			w := e.startWorker(t, func(c *worker.Config, d *worker.Deps) {
				c.Blog.Purge = on
				d.Purger = rec
			})
			u, err := e.svc.Accounts.SignUp(ctx, "alice", "a@example.com", "correct horse")
			if err != nil {
				t.Fatal(err)
			}
			p, err := e.svc.Posts.Create(ctx, posts.Draft{AuthorID: u.ID, Author: u.Handle, Title: "T", Body: "B", Published: true})
			if err != nil {
				t.Fatal(err)
			}
			c, err := e.svc.Comments.Create(ctx, p.ID, u.ID, u.Handle, "nice")
			if err != nil {
				t.Fatal(err)
			}
			job := app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: p.ID, CommentID: c.ID, AuthorID: u.ID, Author: u.Handle})
			if err := e.publisher(t).Enqueue(ctx, job); err != nil {
				t.Fatal(err)
			}
			// Done counts once the handler has returned, its purge sent.
			testwait.RetryUntil(t, 20*time.Second, func() error { // the comment job done
				if n := w.Counts(app.JobCommentAdded, "done"); n != 1 {
					return fmt.Errorf("%d comment jobs done, want 1", n)
				}
				return nil
			})
			if got, err := e.svc.Posts.Get(ctx, p.ID); err != nil || got.Comments != 1 {
				t.Fatalf("post has %d comments (%v), want 1", got.Comments, err)
			}
			if got := rec.hasURL("/p/" + p.ID); got != on {
				t.Errorf("purged /p/%s = %v, want %v", p.ID, got, on)
			}
		})
	}
}
