package content_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The clients are the app's services over the wire; package content does
// not import pkg/app (internal/importrules), so the check is here.
var (
	_ app.Posts    = (*content.PostsClient)(nil)
	_ app.Comments = (*content.CommentsClient)(nil)
	_ app.Media    = (*content.MediaClient)(nil)
)

// testStore is a real database whose writes a test can make fail.
type testStore struct {
	store.Store
	failWrites atomic.Bool
}

func (s *testStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	if s.failWrites.Load() {
		return 0, store.ErrUnavailable
	}
	return s.Store.Txn(ctx, ops...)
}

// fixture is a content service over a real store, served by a real rpc
// server over HTTP, and the gateway's clients of it.
type fixture struct {
	st        *testStore
	d         content.Deps
	rpc       *rpc.Client
	posts     *content.PostsClient
	comments  *content.CommentsClient
	media     *content.MediaClient
	committed *atomic.Int64 // calls of Deps.EventsCommitted
}

func newFixture(tb testing.TB) fixture {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	st := &testStore{Store: db}
	committed := new(atomic.Int64)
	d := content.Deps{Posts: posts.New(st), Comments: comments.New(st), Media: media.New(st),
		Outbox: svc.OutboxOf(st, content.Name), EventsCommitted: func() { committed.Add(1) }}
	cl, _ := rpctest.Serve(tb, rpc.ServerConfig{Service: content.Name, Instance: "content-1", Logger: slog.New(slog.DiscardHandler)},
		func(srv *rpc.Server) { content.Register(srv, d) })
	return fixture{st: st, d: d, rpc: cl, posts: content.NewPosts(cl), comments: content.NewComments(cl),
		media: content.NewMedia(cl), committed: committed}
}

// takeEvents returns the events in the outbox, oldest first, and empties
// it, as the publisher would.
func (f fixture) takeEvents(tb testing.TB) []svc.Event {
	tb.Helper()
	ctx := context.Background()
	evs, bad, _, err := f.d.Outbox.Pending(ctx, "", svc.MaxOutboxBatch)
	if err != nil || len(bad) > 0 {
		tb.Fatalf("outbox: %v (undecodable %v)", err, bad)
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	if err := f.d.Outbox.Remove(ctx, ids...); err != nil {
		tb.Fatal(err)
	}
	return evs
}

// wantEvents takes the outbox's events and checks their types, in any
// order, and that each is the content service's with a distinct id.
func (f fixture) wantEvents(tb testing.TB, what string, types ...string) []svc.Event {
	tb.Helper()
	evs := f.takeEvents(tb)
	count := map[string]int{}
	for _, ev := range evs {
		count[ev.Type]++
		if ev.Source != content.Name {
			tb.Errorf("%s: event %s has source %q, want %q", what, ev.ID, ev.Source, content.Name)
		}
	}
	want := map[string]int{}
	for _, t := range types {
		want[t]++
	}
	if len(count) != len(want) {
		tb.Fatalf("%s: events %v, want %v", what, count, want)
	}
	for t, n := range want {
		if count[t] != n {
			tb.Fatalf("%s: events %v, want %v", what, count, want)
		}
	}
	return evs
}

// eventOf returns the one event of typ among evs, its data decoded into v.
func eventOf(tb testing.TB, evs []svc.Event, typ string, v any) svc.Event {
	tb.Helper()
	for _, ev := range evs {
		if ev.Type == typ {
			if err := ev.Decode(v); err != nil {
				tb.Fatal(err)
			}
			return ev
		}
	}
	tb.Fatalf("no %s among %d events", typ, len(evs))
	return svc.Event{}
}

func (f fixture) createPost(tb testing.TB, author, title string, published bool) posts.Post {
	tb.Helper()
	p, err := f.posts.Create(context.Background(), posts.Draft{AuthorID: author, Author: "ada",
		Title: title, Body: "Some *body* about " + title, Tags: []string{"Go", "raft"}, Published: published})
	if err != nil {
		tb.Fatalf("Create(%q): %v", title, err)
	}
	return p
}

func pngImage(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// wantStatus checks that err is the service's answer of status, matching want.
func wantStatus(tb testing.TB, what string, err, want error, status int) {
	tb.Helper()
	var re *rpc.Error
	if !errors.Is(err, want) || !errors.As(err, &re) || re.Status != status {
		tb.Errorf("%s = %v, want %v under %d", what, err, want, status)
	}
}

// wantField checks that err is a 400 about field.
func wantField(tb testing.TB, what string, err error, field string) {
	tb.Helper()
	var fe *svc.FieldError
	var re *rpc.Error
	if !errors.As(err, &fe) || fe.Field != field || !errors.As(err, &re) || re.Status != 400 {
		tb.Errorf("%s = %v, want a 400 field error on %s", what, err, field)
	}
}
