package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/app"
)

// Every job handler must be idempotent: the queue stage delivers at least
// once. Each job here is handled twice and must have one effect.
func TestJobsAreIdempotent(t *testing.T) {
	s := newStack(t)
	alice, bob := s.client(t), s.client(t)
	alice.signup("alice")
	bob.signup("bob")
	bob.json("POST", "/api/v1/users/alice/follow", nil)
	p := alice.post("Twice", "Body.")
	id := p["id"].(string)
	ctx := context.Background()
	h := s.App.JobHandlers()
	svc := s.App.Services()
	twice := func(j app.Job) {
		t.Helper()
		for i := 0; i < 2; i++ {
			if err := h.Handle(ctx, j); err != nil {
				t.Fatalf("Handle(%s) #%d: %v", j.Kind, i+1, err)
			}
		}
	}

	before, _ := svc.Posts.Get(ctx, id)
	twice(app.NewJob(app.JobView, app.PostPayload{PostID: id}))
	after, _ := svc.Posts.Get(ctx, id)
	if got, want := after.Views, before.Views+1; got != want {
		t.Errorf("views after one view job handled twice = %d, want %d", got, want)
	}

	files, _ := filepathGlob(s.Outbox, "*.eml")
	twice(app.NewJob(app.JobWelcome, app.WelcomePayload{UserID: "u", Handle: "zed", Email: "zed@example.com"}))
	files2, _ := filepathGlob(s.Outbox, "*.eml")
	if got, want := len(files2), len(files)+1; got != want {
		t.Errorf("outbox has %d e-mails after one welcome job handled twice, want %d", got, want)
	}

	bobUser, _ := svc.Accounts.UserByHandle(ctx, "bob")
	notes, _ := svc.Notifications.List(ctx, bobUser.ID, 0)
	twice(app.NewJob(app.JobNotifyFollowers, app.PostPayload{PostID: id}))
	notes2, _ := svc.Notifications.List(ctx, bobUser.ID, 0)
	if got, want := len(notes2), len(notes)+1; got != want {
		t.Errorf("bob has %d notifications after one job handled twice, want %d", got, want)
	}

	bob.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "hi"})
	twice(app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: id, AuthorID: bobUser.ID, Author: "bob"}))
	if got, _ := svc.Posts.Get(ctx, id); got.Comments != 1 {
		t.Errorf("comments count = %d, want 1", got.Comments)
	}

	twice(app.NewJob(app.JobIndex, app.PostPayload{PostID: id}))
	if got, _ := svc.Search.Query(ctx, "twice", 10); len(got) != 1 {
		t.Errorf("search after indexing twice = %v, want one hit", got)
	}

	r := alice.multipart("/api/v1/posts/"+id+"/image", pngImage(t, 900, 300))
	want(t, "upload", r, 200)
	withThumb, _ := svc.Posts.Get(ctx, id)
	twice(app.NewJob(app.JobThumbnail, app.ImagePayload{PostID: id, Image: withThumb.Image}))
	if got, _ := svc.Posts.Get(ctx, id); got.Thumb != withThumb.Thumb || got.Thumb == "" {
		t.Errorf("thumb after the job ran again = %q, want %q", got.Thumb, withThumb.Thumb)
	}
	// A late thumbnail of an old image does not replace the new one's.
	twice(app.NewJob(app.JobThumbnail, app.ImagePayload{PostID: id, Image: withThumb.Thumb}))
	if got, _ := svc.Posts.Get(ctx, id); got.Thumb != withThumb.Thumb {
		t.Errorf("stale thumbnail job changed thumb to %q", got.Thumb)
	}

	// Jobs about a deleted post succeed without effect.
	alice.json("DELETE", "/api/v1/posts/"+id, nil)
	for _, kind := range []string{app.JobView, app.JobIndex, app.JobNotifyFollowers} {
		twice(app.NewJob(kind, app.PostPayload{PostID: id}))
	}
	if err := h.Handle(ctx, app.Job{Kind: "nope", ID: "x"}); err == nil {
		t.Errorf("Handle of an unknown kind = nil, want an error")
	}
}

// CheckJob takes nothing in a job on trust: every field a handler writes
// out or looks up by must have the form the app gives it.
func TestCheckJob(t *testing.T) {
	id := app.NewJob(app.JobView, app.PostPayload{}).ID
	tests := []struct {
		name string
		job  app.Job
		ok   bool
	}{
		{"welcome", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada", Email: "ada@example.com"}), true},
		{"welcome, CRLF in the address", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada", Email: "ada@example.com\r\nBcc: x@evil.example"}), false},
		{"welcome, two addresses", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada", Email: "ada@example.com, x@evil.example"}), false},
		{"welcome, a display name", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada", Email: "Ada <ada@example.com>"}), false},
		{"welcome, no address", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada"}), false},
		{"welcome, a long address", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada", Email: strings.Repeat("a", 250) + "@example.com"}), false},
		{"welcome, a handle with a line break", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "ada\nBcc: x", Email: "ada@example.com"}), false},
		{"welcome, an upper-case handle", app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "Ada", Email: "ada@example.com"}), false},
		{"comment", app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: id, CommentID: id, AuthorID: id, Author: "bob"}), true},
		{"comment, author with CRLF", app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: id, CommentID: id, AuthorID: id, Author: "bob\r\nX: y"}), false},
		{"comment, no comment id (no handler uses it)", app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: id, AuthorID: id, Author: "bob"}), true},
		{"comment, no author id", app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: id, Author: "bob"}), false},
		{"thumbnail", app.NewJob(app.JobThumbnail, app.ImagePayload{PostID: id, Image: "0123456789abcdef0123456789abcdef.png"}), true},
		{"thumbnail, a path", app.NewJob(app.JobThumbnail, app.ImagePayload{PostID: id, Image: "../store.db"}), false},
		{"view", app.NewJob(app.JobView, app.PostPayload{PostID: id}), true},
		{"index, not an id", app.NewJob(app.JobIndex, app.PostPayload{PostID: "1; drop"}), false},
		{"notify, not JSON", app.Job{Kind: app.JobNotifyFollowers, ID: id, Payload: []byte("{")}, false},
		{"job id, not an id", app.Job{Kind: app.JobView, ID: "../x", Payload: []byte(`{"post_id":"` + id + `"}`)}, false},
	}
	for _, tt := range tests {
		err := app.CheckJob(tt.job)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: CheckJob = %v, want nil", tt.name, err)
		case !tt.ok && !errors.Is(err, app.ErrBadJob):
			t.Errorf("%s: CheckJob = %v, want ErrBadJob", tt.name, err)
		}
	}
	if err := app.CheckJob(app.NewJob("mine-bitcoin", struct{}{})); !errors.Is(err, app.ErrUnknownJob) {
		t.Errorf("CheckJob(unknown kind) = %v, want ErrUnknownJob", err)
	}
}
