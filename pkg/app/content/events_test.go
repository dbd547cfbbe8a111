package content_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Each write of a post commits its events with it: post.changed always,
// post.published the first time the post becomes visible.
func TestPostEvents(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	author := ids.New()

	pub := f.createPost(t, author, "published", true)
	evs := f.wantEvents(t, "create published", svc.EventPostChanged, svc.EventPostPublished)
	var published svc.PostPublished
	var changed svc.PostChanged
	eventOf(t, evs, svc.EventPostPublished, &published)
	eventOf(t, evs, svc.EventPostChanged, &changed)
	if want := (svc.PostPublished{PostID: pub.ID, AuthorID: author}); published != want {
		t.Errorf("post.published data = %+v, want %+v", published, want)
	}
	if want := (svc.PostChanged{PostID: pub.ID, AuthorID: author}); changed != want {
		t.Errorf("post.changed data = %+v, want %+v", changed, want)
	}
	if evs[0].ID == evs[1].ID {
		t.Errorf("two events of one write share id %s", evs[0].ID)
	}

	draft := f.createPost(t, author, "draft", false)
	f.wantEvents(t, "create draft", svc.EventPostChanged)
	title := "draft, edited"
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Title: &title}); err != nil {
		t.Fatal(err)
	}
	f.wantEvents(t, "edit the draft", svc.EventPostChanged)
	yes := true
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Published: &yes}); err != nil {
		t.Fatal(err)
	}
	evs = f.wantEvents(t, "publish the draft", svc.EventPostChanged, svc.EventPostPublished)
	eventOf(t, evs, svc.EventPostPublished, &published)
	if published.PostID != draft.ID {
		t.Errorf("post.published of post %s, want %s", published.PostID, draft.ID)
	}
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Published: &yes, Title: &title}); err != nil {
		t.Fatal(err)
	}
	f.wantEvents(t, "publish it again", svc.EventPostChanged)

	// A thumbnail is a change; the same thumbnail again changes nothing.
	img := "0123456789abcdef0123456789abcdef.png"
	if _, err := f.posts.Update(ctx, pub.ID, posts.Patch{Image: &img}); err != nil {
		t.Fatal(err)
	}
	f.wantEvents(t, "an image", svc.EventPostChanged)
	for range 2 {
		if _, err := f.posts.SetThumb(ctx, pub.ID, img, "fedcba9876543210fedcba9876543210.png"); err != nil {
			t.Fatal(err)
		}
	}
	f.wantEvents(t, "the same thumbnail twice", svc.EventPostChanged)

	// Views and comment counts tell nobody.
	if err := f.posts.AddView(ctx, pub.ID, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := f.posts.SetComments(ctx, pub.ID, 4); err != nil {
		t.Fatal(err)
	}
	f.wantEvents(t, "a view and a count")

	for range 2 {
		if err := f.posts.Delete(ctx, pub.ID); err != nil {
			t.Fatal(err)
		}
	}
	evs = f.wantEvents(t, "delete twice", svc.EventPostChanged)
	eventOf(t, evs, svc.EventPostChanged, &changed)
	if want := (svc.PostChanged{PostID: pub.ID, AuthorID: author}); changed != want {
		t.Errorf("post.changed of the delete = %+v, want %+v", changed, want)
	}
	// Eight writes put events: two creates, four edits, a thumbnail, a delete.
	if got := f.committed.Load(); got != 8 {
		t.Errorf("EventsCommitted called %d times, want 8", got)
	}
}

// A write that fails leaves no event, whether the service refused it or
// its store did.
func TestFailedWriteNoEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	author := ids.New()
	draft := f.createPost(t, author, "draft", false)
	f.takeEvents(t)
	calls := f.committed.Load()

	empty := ""
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Title: &empty}); err == nil {
		t.Fatal("Update with an empty title succeeded")
	}
	if _, err := f.posts.Create(ctx, posts.Draft{AuthorID: author, Title: "no body"}); err == nil {
		t.Fatal("Create without a body succeeded")
	}
	if _, err := f.comments.Create(ctx, draft.ID, author, "ada", ""); err == nil {
		t.Fatal("an empty comment succeeded")
	}

	f.st.failWrites.Store(true)
	yes := true
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Published: &yes}); err == nil {
		t.Fatal("publishing with the store down succeeded")
	}
	if _, err := f.posts.Create(ctx, posts.Draft{AuthorID: author, Author: "ada", Title: "t", Body: "b", Published: true}); err == nil {
		t.Fatal("Create with the store down succeeded")
	}
	if _, err := f.comments.Create(ctx, draft.ID, author, "ada", "hello"); err == nil {
		t.Fatal("a comment with the store down succeeded")
	}
	f.st.failWrites.Store(false)
	f.wantEvents(t, "failed writes")
	if got := f.committed.Load(); got != calls {
		t.Errorf("EventsCommitted called %d times for failed writes", got-calls)
	}

	// The draft published for real, afterwards: published once.
	if _, err := f.posts.Update(ctx, draft.ID, posts.Patch{Published: &yes}); err != nil {
		t.Fatal(err)
	}
	f.wantEvents(t, "publish after the failures", svc.EventPostChanged, svc.EventPostPublished)
}

// Writers racing to publish one draft publish it once: the decision is
// the committing attempt's, from the post its compare-and-set held.
func TestConcurrentPublishOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	draft := f.createPost(t, ids.New(), "draft", false)
	f.takeEvents(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			yes, title := true, "published by writer "+string(rune('a'+i))
			_, err := f.posts.Update(ctx, draft.ID, posts.Patch{Published: &yes, Title: &title})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	evs := f.takeEvents(t)
	n := 0
	for _, ev := range evs {
		if ev.Type == svc.EventPostPublished {
			n++
		}
	}
	if n != 1 || len(evs) != 7 {
		t.Errorf("6 writers publishing one draft: %d post.published among %d events, want 1 among 7", n, len(evs))
	}
}

// A comment commits its comment.added.
func TestCommentEvent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.createPost(t, ids.New(), "post", true)
	f.takeEvents(t)
	reader := ids.New()
	c, err := f.comments.Create(ctx, p.ID, reader, "bob", "hi")
	if err != nil {
		t.Fatal(err)
	}
	evs := f.wantEvents(t, "a comment", svc.EventCommentAdded)
	var added svc.CommentAdded
	eventOf(t, evs, svc.EventCommentAdded, &added)
	if want := (svc.CommentAdded{PostID: p.ID, CommentID: c.ID, AuthorID: reader, Author: "bob"}); added != want {
		t.Errorf("comment.added data = %+v, want %+v", added, want)
	}
}

// The service's own follow-ups: a comment's event recounts the post's
// comments, a post's change makes the thumbnail of its image; each twice
// is each once.
func TestHandlers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	h := content.Handlers(f.d)
	p := f.createPost(t, ids.New(), "post", true)
	f.takeEvents(t)

	for _, body := range []string{"one", "two"} {
		if _, err := f.comments.Create(ctx, p.ID, ids.New(), "bob", body); err != nil {
			t.Fatal(err)
		}
	}
	commentEvs := f.wantEvents(t, "two comments", svc.EventCommentAdded, svc.EventCommentAdded)
	for range 2 {
		if err := h[svc.EventCommentAdded](ctx, commentEvs[0]); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.posts.Get(ctx, p.ID); got.Comments != 2 {
			t.Errorf("comments after the recount = %d, want 2", got.Comments)
		}
	}
	f.wantEvents(t, "a recount")

	m, err := f.media.Put(ctx, pngImage(t, 600, 40))
	if err != nil {
		t.Fatal(err)
	}
	empty := ""
	if _, err := f.posts.Update(ctx, p.ID, posts.Patch{Image: &m.Name, Thumb: &empty}); err != nil {
		t.Fatal(err)
	}
	evs := f.wantEvents(t, "an image", svc.EventPostChanged)
	if err := h[svc.EventPostChanged](ctx, evs[0]); err != nil {
		t.Fatal(err)
	}
	got, _ := f.posts.Get(ctx, p.ID)
	thumb, err := f.d.Media.Stat(ctx, got.Thumb)
	if err != nil || thumb.Width != 480 {
		t.Fatalf("the post's thumbnail %q: %+v, %v; want an image 480 wide", got.Thumb, thumb, err)
	}
	// Attaching the thumbnail is a change too; handling it, or the first
	// event again, changes nothing more.
	thumbEvs := f.wantEvents(t, "the thumbnail attached", svc.EventPostChanged)
	for _, ev := range []svc.Event{thumbEvs[0], evs[0]} {
		if err := h[svc.EventPostChanged](ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if again, _ := f.posts.Get(ctx, p.ID); again.Thumb != got.Thumb || !again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("after the events again: thumb %q, want %q unchanged", again.Thumb, got.Thumb)
	}
	f.wantEvents(t, "the events again")

	// A deleted post: nothing to do.
	if err := f.posts.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []svc.Event{evs[0], commentEvs[1]} {
		if err := h[ev.Type](ctx, ev); err != nil {
			t.Errorf("%s of a deleted post: %v", ev.Type, err)
		}
	}

	// An event of another type, or whose data does not decode, can never apply.
	if err := h[svc.EventCommentAdded](ctx, evs[0]); !errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("a post.changed given to the comment.added handler = %v, want svc.ErrBadEvent", err)
	}
	bad := evs[0]
	bad.Data = []byte(`"not an object"`)
	if err := h[svc.EventPostChanged](ctx, bad); !errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("undecodable data = %v, want svc.ErrBadEvent", err)
	}
}
