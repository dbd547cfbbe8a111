package content_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

func postIDs(ps []posts.Post) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// Every method of app.Posts over the wire does what the service does.
func TestPostsOverTheWire(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	author := ids.New()
	a := f.createPost(t, author, "first", true)
	b := f.createPost(t, author, "second", true)
	draft := f.createPost(t, author, "draft", false)
	if a.HTML == "" || !slices.Equal(a.Tags, []string{"go", "raft"}) || !a.Published || a.PublishedAt.IsZero() {
		t.Fatalf("Create = %+v: want rendered HTML, tags go and raft, published", a)
	}

	got, err := f.posts.Get(ctx, a.ID)
	if err != nil || got.ID != a.ID || got.Title != a.Title || got.HTML != a.HTML || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("Get(%s) = %+v, %v; want %+v", a.ID, got, err, a)
	}
	many, err := f.posts.Many(ctx, []string{b.ID, ids.New(), a.ID})
	if err != nil || !slices.Equal(postIDs(many), []string{b.ID, a.ID}) {
		t.Errorf("Many(b, unknown, a) = %v, %v; want b, a", postIDs(many), err)
	}
	if many, err := f.posts.Many(ctx, nil); err != nil || len(many) != 0 {
		t.Errorf("Many(nil) = %v, %v; want none", many, err)
	}

	feed, more, err := f.posts.Feed(ctx, 1, 1)
	if err != nil || !slices.Equal(postIDs(feed), []string{b.ID}) || !more {
		t.Errorf("Feed(1, 1) = %v, %v, %v; want [b], more", postIDs(feed), more, err)
	}
	feed, more, err = f.posts.Feed(ctx, 2, 1)
	if err != nil || !slices.Equal(postIDs(feed), []string{a.ID}) || more {
		t.Errorf("Feed(2, 1) = %v, %v, %v; want [a], no more", postIDs(feed), more, err)
	}
	byAuthor, _, err := f.posts.ByAuthor(ctx, author, 1, 10)
	if err != nil || !slices.Equal(postIDs(byAuthor), []string{b.ID, a.ID}) {
		t.Errorf("ByAuthor = %v, %v; want b, a", postIDs(byAuthor), err)
	}
	byTag, _, err := f.posts.ByTag(ctx, "RAFT", 1, 10)
	if err != nil || !slices.Equal(postIDs(byTag), []string{b.ID, a.ID}) {
		t.Errorf("ByTag(RAFT) = %v, %v; want b, a", postIDs(byTag), err)
	}
	if none, _, err := f.posts.ByTag(ctx, "not a tag!", 1, 10); err != nil || len(none) != 0 {
		t.Errorf("ByTag(not a tag!) = %v, %v; want none", none, err)
	}
	drafts, err := f.posts.Drafts(ctx, author, 10)
	if err != nil || !slices.Equal(postIDs(drafts), []string{draft.ID}) {
		t.Errorf("Drafts = %v, %v; want [draft]", postIDs(drafts), err)
	}

	title, tags := "first, edited", []string{"edited"}
	up, err := f.posts.Update(ctx, a.ID, posts.Patch{Title: &title, Tags: &tags})
	if err != nil || up.Title != title || !slices.Equal(up.Tags, tags) || up.Body != a.Body {
		t.Fatalf("Update(title, tags) = %+v, %v", up, err)
	}
	if byTag, _, _ := f.posts.ByTag(ctx, "edited", 1, 10); !slices.Equal(postIDs(byTag), []string{a.ID}) {
		t.Errorf("ByTag(edited) after the edit = %v, want [a]", postIDs(byTag))
	}

	for range 2 {
		if err := f.posts.AddView(ctx, a.ID, "view-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.posts.SetComments(ctx, a.ID, 3); err != nil {
		t.Fatal(err)
	}
	img, err := f.media.Put(ctx, pngImage(t, 8, 8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.posts.Update(ctx, a.ID, posts.Patch{Image: &img.Name}); err != nil {
		t.Fatal(err)
	}
	thumbed, err := f.posts.SetThumb(ctx, a.ID, img.Name, "thumb.png")
	if err != nil || thumbed.Thumb != "thumb.png" {
		t.Errorf("SetThumb = %+v, %v; want thumb.png", thumbed, err)
	}
	if stale, err := f.posts.SetThumb(ctx, a.ID, "another.png", "other.png"); err != nil || stale.Thumb != "thumb.png" {
		t.Errorf("SetThumb for another image = thumb %q, %v; want thumb.png kept", stale.Thumb, err)
	}
	got, _ = f.posts.Get(ctx, a.ID)
	if got.Views != 1 || got.Comments != 3 || got.Image != img.Name || got.Thumb != "thumb.png" {
		t.Errorf("after a view twice, 3 comments and a thumbnail: views %d, comments %d, image %q, thumb %q; want 1, 3, %q, thumb.png",
			got.Views, got.Comments, got.Image, got.Thumb, img.Name)
	}

	for range 2 { // twice is not an error
		if err := f.posts.Delete(ctx, a.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := f.posts.Get(ctx, a.ID); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want svc.ErrNotFound", err)
	}
}

// Every method of app.Comments over the wire.
func TestCommentsOverTheWire(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.createPost(t, ids.New(), "post", true)
	reader := ids.New()
	c1, err := f.comments.Create(ctx, p.ID, reader, "bob", "  nice  ")
	if err != nil || c1.Body != "nice" || c1.PostID != p.ID || c1.AuthorID != reader || c1.Author != "bob" {
		t.Fatalf("Create = %+v, %v", c1, err)
	}
	c2, err := f.comments.Create(ctx, p.ID, reader, "bob", "again")
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.comments.List(ctx, p.ID)
	if err != nil || len(list) != 2 || list[0].ID != c1.ID || list[1].ID != c2.ID || !list[0].CreatedAt.Equal(c1.CreatedAt) {
		t.Errorf("List = %+v, %v; want c1, c2", list, err)
	}
	if n, err := f.comments.Count(ctx, p.ID); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
	if err := f.comments.DeleteForPost(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if list, err := f.comments.List(ctx, p.ID); err != nil || len(list) != 0 {
		t.Errorf("List after DeleteForPost = %+v, %v; want none", list, err)
	}
	if n, err := f.comments.Count(ctx, p.ID); err != nil || n != 0 {
		t.Errorf("Count after DeleteForPost = %d, %v; want 0", n, err)
	}
}

// Every method of app.Media over the wire: the bytes arrive whole.
func TestMediaOverTheWire(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	data := pngImage(t, 600, 40)
	m, err := f.media.Put(ctx, data)
	if err != nil || !media.ValidName(m.Name) || m.Size != len(data) || m.Width != 600 {
		t.Fatalf("Put = %+v, %v", m, err)
	}
	if again, err := f.media.Put(ctx, data); err != nil || again != m {
		t.Errorf("Put of the same bytes = %+v, %v; want %+v", again, err, m)
	}
	gm, got, err := f.media.Get(ctx, m.Name)
	if err != nil || gm != m || !bytes.Equal(got, data) {
		t.Errorf("Get = %+v, %d bytes, %v; want %+v and the %d bytes put", gm, len(got), err, m, len(data))
	}
	th, err := f.media.Thumbnail(ctx, m.Name)
	if err != nil || th.Width != media.ThumbWidth || th.Name == m.Name {
		t.Errorf("Thumbnail = %+v, %v; want %d wide", th, err, media.ThumbWidth)
	}
}

// Errors arrive as the in-process service's, under their statuses.
func TestErrorsOverTheWire(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	author, other := ids.New(), ids.New()
	pub := f.createPost(t, author, "published", true)
	draft := f.createPost(t, author, "draft", false)

	_, err := f.posts.Get(ctx, ids.New())
	wantStatus(t, "Get(unknown)", err, svc.ErrNotFound, 404)
	_, err = f.posts.Update(ctx, ids.New(), posts.Patch{})
	wantStatus(t, "Update(unknown)", err, svc.ErrNotFound, 404)
	_, err = f.comments.Create(ctx, ids.New(), author, "ada", "on nothing")
	wantStatus(t, "comment on an unknown post", err, svc.ErrNotFound, 404)
	_, _, err = f.media.Get(ctx, "0123456789abcdef0123456789abcdef.png")
	wantStatus(t, "media Get(unknown)", err, svc.ErrNotFound, 404)

	_, err = f.posts.Create(ctx, posts.Draft{AuthorID: author, Author: "ada", Body: "no title"})
	wantField(t, "Create without a title", err, "title")
	_, err = f.posts.Create(ctx, posts.Draft{AuthorID: author, Author: "ada", Title: "t", Body: "b", Tags: []string{"no spaces"}})
	wantField(t, "Create with a bad tag", err, "tags")
	_, err = f.posts.Create(ctx, posts.Draft{AuthorID: author, Author: "ada", Title: "t", Body: string(bytes.Repeat([]byte("x"), posts.MaxBody+1))})
	wantStatus(t, "Create with a body too long", err, svc.ErrTooLarge, 413)
	_, err = f.comments.Create(ctx, pub.ID, author, "ada", " ")
	wantField(t, "an empty comment", err, "body")
	_, err = f.comments.Create(ctx, pub.ID, author, "ada", string(bytes.Repeat([]byte("x"), 4001)))
	wantStatus(t, "a comment too long", err, svc.ErrTooLarge, 413)
	_, _, err = f.posts.Feed(ctx, 1, content.MaxPageSize+1)
	wantField(t, "Feed of 101", err, "size")
	_, err = f.posts.Drafts(ctx, author, 0)
	wantField(t, "Drafts(limit 0)", err, "limit")
	_, err = rpc.Call(ctx, f.rpc, content.PostManyMethod, content.PostManyRequest{IDs: make([]string, content.MaxMany+1)})
	wantField(t, "post-many of 201 ids", err, "ids")
	err = f.posts.AddView(ctx, pub.ID, "")
	wantField(t, "AddView without a job id", err, "job_id")
	err = f.comments.DeleteForPost(ctx, "")
	wantField(t, "DeleteForPost of no post", err, "post_id")

	// The author check a curl user may ask for: another author's post is
	// forbidden, their draft not found; the author's own goes through.
	title := "taken over"
	_, err = rpc.Call(ctx, f.rpc, content.PostUpdateMethod, content.PostUpdateRequest{ID: pub.ID, Title: &title, AuthorID: other})
	wantStatus(t, "another author's update", err, svc.ErrForbidden, 403)
	_, err = rpc.Call(ctx, f.rpc, content.PostDeleteMethod, content.PostDeleteRequest{ID: pub.ID, AuthorID: other})
	wantStatus(t, "another author's delete", err, svc.ErrForbidden, 403)
	_, err = rpc.Call(ctx, f.rpc, content.PostUpdateMethod, content.PostUpdateRequest{ID: draft.ID, Title: &title, AuthorID: other})
	wantStatus(t, "another author's update of a draft", err, svc.ErrNotFound, 404)
	_, err = rpc.Call(ctx, f.rpc, content.PostDeleteMethod, content.PostDeleteRequest{ID: draft.ID, AuthorID: other})
	wantStatus(t, "another author's delete of a draft", err, svc.ErrNotFound, 404)
	if _, err := f.posts.Get(ctx, draft.ID); err != nil {
		t.Errorf("the draft after another author's delete: %v", err)
	}
	if _, err := rpc.Call(ctx, f.rpc, content.PostDeleteMethod, content.PostDeleteRequest{ID: ids.New(), AuthorID: other}); err != nil {
		t.Errorf("a delete of a post already gone, with an author = %v, want nil", err)
	}
	if p, err := f.posts.Get(ctx, pub.ID); err != nil || p.Title != pub.Title {
		t.Errorf("after refused changes: %q, %v; want %q", p.Title, err, pub.Title)
	}
	if p, err := rpc.Call(ctx, f.rpc, content.PostUpdateMethod, content.PostUpdateRequest{ID: pub.ID, Title: &title, AuthorID: author}); err != nil || p.Title != title {
		t.Errorf("the author's own update = %q, %v", p.Title, err)
	}

	// Media: not an image; over the limit, refused by the client before
	// sending, and by the service when sent anyway.
	_, err = f.media.Put(ctx, []byte("plain text, not an image"))
	wantStatus(t, "Put(text)", err, svc.ErrUnsupported, 415)
	big := make([]byte, media.MaxBytes+1)
	if _, err := f.media.Put(ctx, big); !errors.Is(err, svc.ErrTooLarge) {
		t.Errorf("client Put of %d bytes = %v, want svc.ErrTooLarge", len(big), err)
	}
	_, err = rpc.Call(ctx, f.rpc, content.MediaPutMethod, content.MediaPutRequest{Data: big})
	wantStatus(t, "media-put of MaxBytes+1 sent anyway", err, svc.ErrTooLarge, 413)
	_, err = rpc.Call(ctx, f.rpc, content.MediaPutMethod, content.MediaPutRequest{})
	wantField(t, "media-put without data", err, "data")
}
