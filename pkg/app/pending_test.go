package app_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/scalestack/scalestack/pkg/app"
)

// heldThumbnails is a job queue (as with --jobs=queue) whose worker has not
// made the thumbnails yet: it runs every other job at once and holds the
// thumbnail jobs until release.
type heldThumbnails struct {
	h    func() *app.Handlers
	mu   sync.Mutex
	held []app.Job
}

func (q *heldThumbnails) Enqueue(ctx context.Context, j app.Job) error {
	if j.Kind == app.JobThumbnail {
		q.mu.Lock()
		q.held = append(q.held, j)
		q.mu.Unlock()
		return nil
	}
	return q.h().Handle(ctx, j)
}

func (q *heldThumbnails) release(tb testing.TB) {
	tb.Helper()
	q.mu.Lock()
	held := q.held
	q.held = nil
	q.mu.Unlock()
	for _, j := range held {
		if err := q.h().Handle(context.Background(), j); err != nil {
			tb.Fatalf("thumbnail job: %v", err)
		}
	}
}

// TestThumbnailPendingState: a post whose cover image has no thumbnail yet
// shows "thumbnail processing" where the thumbnail goes, on the cards and
// on the edit page; once the job has run, the thumbnail.
func TestThumbnailPendingState(t *testing.T) {
	q := &heldThumbnails{}
	s := newStack(t, func(c *app.Config, d *app.Deps) { d.JobQueue = q })
	q.h = s.App.JobHandlers
	alice, reader := s.client(t), s.client(t)
	alice.signup("alice")
	id := alice.post("Cover story", "Body.", "photos")["id"].(string)
	r := alice.multipart("/api/v1/posts/"+id+"/image", pngImage(t, 900, 300))
	want(t, "upload", r, http.StatusOK)
	q.mu.Lock()
	n := len(q.held)
	q.mu.Unlock()
	if got := n; got != 1 {
		t.Fatalf("held thumbnail jobs = %d, want 1", got)
	}

	const pending = "thumbnail processing"
	for _, path := range []string{"/", "/u/alice", "/t/photos"} {
		page := reader.get(path)
		want(t, path, page, http.StatusOK)
		if !strings.Contains(page.String(), pending) {
			t.Errorf("GET %s before the thumbnail: no %q in the card", path, pending)
		}
		if strings.Contains(page.String(), `class="thumb" href=`) {
			t.Errorf("GET %s before the thumbnail: shows a thumbnail link", path)
		}
	}
	edit := alice.get("/p/" + id + "/edit")
	want(t, "edit page", edit, http.StatusOK)
	if !strings.Contains(edit.String(), pending) {
		t.Errorf("edit page before the thumbnail: no %q", pending)
	}

	q.release(t)
	p, err := s.App.Services().Posts.Get(context.Background(), id)
	if err != nil || p.Thumb == "" {
		t.Fatalf("post after the thumbnail job: thumb %q, err %v; want a thumb", p.Thumb, err)
	}
	home := reader.get("/")
	if strings.Contains(home.String(), pending) {
		t.Errorf("home after the thumbnail still says %q", pending)
	}
	if !strings.Contains(home.String(), p.Thumb) {
		t.Errorf("home after the thumbnail does not show %s", p.Thumb)
	}
	if edit := alice.get("/p/" + id + "/edit"); strings.Contains(edit.String(), pending) || !strings.Contains(edit.String(), p.Thumb) {
		t.Errorf("edit page after the thumbnail: want the thumbnail %s, not %q", p.Thumb, pending)
	}
}
