package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
)

// eventFixture is the job handlers over in-process services on a real
// store, as a search or notifications node runs them (over clients of the
// other services there).
type eventFixture struct {
	svc    app.Services
	h      *app.Handlers
	outbox string
}

func newEventFixture(tb testing.TB) eventFixture {
	tb.Helper()
	s := app.NewServices(openDB(tb), bcrypt.MinCost)
	outbox := filepath.Join(tb.TempDir(), "outbox")
	return eventFixture{svc: s, h: app.NewHandlers(s, outbox, nil), outbox: outbox}
}

func (f eventFixture) user(tb testing.TB, handle string) accounts.User {
	tb.Helper()
	u, err := f.svc.Accounts.SignUp(context.Background(), handle, handle+"@example.com", "a long passphrase of "+handle)
	if err != nil {
		tb.Fatalf("SignUp(%s): %v", handle, err)
	}
	return u
}

func (f eventFixture) post(tb testing.TB, author accounts.User, title string, published bool) posts.Post {
	tb.Helper()
	p, err := f.svc.Posts.Create(context.Background(), posts.Draft{AuthorID: author.ID, Author: author.Handle,
		Title: title, Body: "Some words.", Published: published})
	if err != nil {
		tb.Fatalf("Create(%s): %v", title, err)
	}
	return p
}

// apply hands ev to the handler of service for its type, n times, each
// time as a redelivery would.
func (f eventFixture) apply(tb testing.TB, service string, ev svc.Event, n int) {
	tb.Helper()
	handle := f.h.EventHandlers(service)[ev.Type]
	if handle == nil {
		tb.Fatalf("EventHandlers(%q) has no handler of %s", service, ev.Type)
	}
	for i := range n {
		if err := handle(context.Background(), ev); err != nil {
			tb.Fatalf("%s handler of %s, delivery %d: %v", service, ev.Type, i+1, err)
		}
	}
}

func (f eventFixture) notes(tb testing.TB, u accounts.User) []notify.Notification {
	tb.Helper()
	ns, err := f.svc.Notifications.List(context.Background(), u.ID, 0)
	if err != nil {
		tb.Fatalf("List(%s): %v", u.Handle, err)
	}
	return ns
}

// Each consuming service handles exactly the types of the contract
// (docs/events.md); the others consume none through these handlers.
func TestEventHandlersTypes(t *testing.T) {
	h := newEventFixture(t).h
	for _, tt := range []struct {
		service string
		want    []string
	}{
		{"search", []string{svc.EventPostChanged}},
		{"notifications", []string{svc.EventCommentAdded, svc.EventPostPublished, svc.EventUserSignedUp}},
		{"users", nil},
		{"content", nil},
		{"payments", nil},
		{"", nil},
	} {
		var got []string
		for typ := range h.EventHandlers(tt.service) {
			got = append(got, typ)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("EventHandlers(%q) handles %v, want %v", tt.service, got, tt.want)
		}
	}
}

// The event's id is the job's: it must be an id as the handlers take it,
// and carry the event's time, which dates the notification and the e-mail.
func TestEventIDIsAJobID(t *testing.T) {
	at := time.Date(2026, 12, 7, 21, 14, 40, 123456789, time.FixedZone("CET", 3600))
	ev := svc.NewEvent("content", svc.EventPostPublished, at, svc.PostPublished{PostID: ids.New(), AuthorID: ids.New()})
	if !ids.Valid(ev.ID) {
		t.Fatalf("NewEvent's id %q is not valid for ids.Valid", ev.ID)
	}
	if got, want := ids.Time(ev.ID), ev.Time.Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("ids.Time(%s) = %v, want the event's time %v", ev.ID, got, want)
	}
}

// search: post.changed makes the index agree with the post as it is now,
// whatever the change was; the same event twice is the same index.
func TestPostChangedReindexes(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	alice := f.user(t, "alice")
	changed := func(p posts.Post) svc.Event {
		return svc.NewEvent("content", svc.EventPostChanged, time.Now(), svc.PostChanged{PostID: p.ID, AuthorID: p.AuthorID})
	}
	query := func(q string) string {
		t.Helper()
		got, err := f.svc.Search.Query(ctx, q, 10)
		if err != nil {
			t.Fatalf("Query(%q): %v", q, err)
		}
		return fmt.Sprint(got)
	}

	draft := f.post(t, alice, "Quorum draft", false)
	f.apply(t, "search", changed(draft), 1)
	if got := query("quorum"); got != "[]" {
		t.Errorf("a draft's post.changed: Query(quorum) = %s, want [] (not published)", got)
	}

	p := f.post(t, alice, "Replication lag", true)
	f.apply(t, "search", changed(p), 2)
	if got, want := query("replication"), fmt.Sprint([]string{p.ID}); got != want {
		t.Errorf("after post.changed twice: Query(replication) = %s, want %s", got, want)
	}

	title := "Failover drill"
	if _, err := f.svc.Posts.Update(ctx, p.ID, posts.Patch{Title: &title}); err != nil {
		t.Fatal(err)
	}
	f.apply(t, "search", changed(p), 1)
	if got, want := query("failover"), fmt.Sprint([]string{p.ID}); got != want || query("replication") != "[]" {
		t.Errorf("after an edit: Query(failover) = %s, want %s; Query(replication) = %s, want []", got, want, query("replication"))
	}

	if err := f.svc.Posts.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	f.apply(t, "search", changed(p), 2)
	if got := query("failover"); got != "[]" {
		t.Errorf("after a delete: Query(failover) = %s, want []", got)
	}
}

// notifications: post.published tells each follower once, under the
// event's id, however often the event comes; the author is not told.
func TestPostPublishedNotifiesFollowers(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	alice, bob, carol := f.user(t, "alice"), f.user(t, "bob"), f.user(t, "carol")
	for _, u := range []accounts.User{bob, carol} {
		if err := f.svc.Accounts.Follow(ctx, u.ID, alice.ID); err != nil {
			t.Fatal(err)
		}
	}
	p := f.post(t, alice, "Replication lag", true)
	ev := svc.NewEvent("content", svc.EventPostPublished, time.Now(), svc.PostPublished{PostID: p.ID, AuthorID: alice.ID})
	f.apply(t, "notifications", ev, 2)

	for _, u := range []accounts.User{bob, carol} {
		ns := f.notes(t, u)
		if len(ns) != 1 {
			t.Fatalf("%s has %d notifications after one event delivered twice, want 1: %+v", u.Handle, len(ns), ns)
		}
		n := ns[0]
		if n.ID != ev.ID || n.Kind != notify.KindPost || n.Actor != "alice" || n.PostID != p.ID || n.PostTitle != p.Title ||
			!n.CreatedAt.Equal(ev.Time.Truncate(time.Millisecond)) {
			t.Errorf("%s's notification = %+v, want post %s by alice, id %s, at %v", u.Handle, n, p.ID, ev.ID, ev.Time)
		}
	}
	if ns := f.notes(t, alice); len(ns) != 0 {
		t.Errorf("alice has %d notifications of her own post, want 0", len(ns))
	}
}

// notifications: comment.added tells the post's author once, and not when
// the author commented on their own post.
func TestCommentAddedNotifiesTheAuthor(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	alice, bob := f.user(t, "alice"), f.user(t, "bob")
	p := f.post(t, alice, "Replication lag", true)
	comment := func(by accounts.User) svc.Event {
		t.Helper()
		c, err := f.svc.Comments.Create(ctx, p.ID, by.ID, by.Handle, "Nice one.")
		if err != nil {
			t.Fatal(err)
		}
		return svc.NewEvent("content", svc.EventCommentAdded, time.Now(),
			svc.CommentAdded{PostID: p.ID, CommentID: c.ID, AuthorID: by.ID, Author: by.Handle})
	}

	ev := comment(bob)
	f.apply(t, "notifications", ev, 2)
	ns := f.notes(t, alice)
	if len(ns) != 1 || ns[0].ID != ev.ID || ns[0].Kind != notify.KindComment || ns[0].Actor != "bob" || ns[0].PostID != p.ID {
		t.Fatalf("alice's notifications after bob's comment delivered twice = %+v, want one comment by bob, id %s", ns, ev.ID)
	}

	f.apply(t, "notifications", comment(alice), 1)
	if got := f.notes(t, alice); len(got) != 1 {
		t.Errorf("alice has %d notifications after commenting on her own post, want still 1: %+v", len(got), got)
	}
	// The recount is the content service's: notifications leaves it alone.
	if got, _ := f.svc.Posts.Get(ctx, p.ID); got.Comments != 0 {
		t.Errorf("the post's comment count = %d after the notifications handler, want 0 (not its job)", got.Comments)
	}
}

// notifications: user.signed_up writes one welcome e-mail, named and dated
// by the event, however often the event comes.
func TestUserSignedUpWritesOneEmail(t *testing.T) {
	f := newEventFixture(t)
	ev := svc.NewEvent("users", svc.EventUserSignedUp, time.Now(), svc.UserSignedUp{UserID: ids.New(), Handle: "zed", Email: "zed@example.com"})
	f.apply(t, "notifications", ev, 2)
	files, err := filepathGlob(f.outbox, "*.eml")
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != ev.ID+".eml" {
		t.Fatalf("outbox after one sign-up delivered twice = %v, %v; want [%s.eml]", files, err, ev.ID)
	}
	mail := readFile(t, files[0])
	for _, want := range []string{"To: zed <zed@example.com>\r\n", "Date: " + ev.Time.Format(time.RFC1123Z) + "\r\n"} {
		if !strings.Contains(mail, want) {
			t.Errorf("the e-mail lacks %q:\n%s", want, mail)
		}
	}
}

// An event that can never be applied matches svc.ErrBadEvent, so the
// subscriber drops it instead of retrying it forever; nothing is done.
func TestBadEventsAreDropped(t *testing.T) {
	f := newEventFixture(t)
	ctx := context.Background()
	good := svc.NewEvent("content", svc.EventPostPublished, time.Now(), svc.PostPublished{PostID: ids.New(), AuthorID: ids.New()})
	with := func(ev svc.Event, edit func(*svc.Event)) svc.Event { edit(&ev); return ev }
	for _, tt := range []struct {
		name    string
		service string
		ev      svc.Event
	}{
		{"data that is not JSON", "notifications", with(good, func(ev *svc.Event) { ev.Data = json.RawMessage(`{"post_id":`) })},
		{"no data", "notifications", with(good, func(ev *svc.Event) { ev.Data = nil })},
		{"a post id that is not an id", "search",
			svc.NewEvent("content", svc.EventPostChanged, time.Now(), svc.PostChanged{PostID: "../x", AuthorID: ids.New()})},
		{"an event id that is not an id", "notifications", with(good, func(ev *svc.Event) { ev.ID = "evt-1" })},
		{"an e-mail with a header in it", "notifications", svc.NewEvent("users", svc.EventUserSignedUp, time.Now(),
			svc.UserSignedUp{UserID: ids.New(), Handle: "zed", Email: "zed@example.com\r\nBcc: all@example.com"})},
		{"a comment by a handle that is not one", "notifications", svc.NewEvent("content", svc.EventCommentAdded, time.Now(),
			svc.CommentAdded{PostID: ids.New(), CommentID: ids.New(), AuthorID: ids.New(), Author: "Bob <b@x>"})},
	} {
		handle := f.h.EventHandlers(tt.service)[tt.ev.Type]
		if handle == nil {
			t.Fatalf("%s: EventHandlers(%q) has no handler of %s", tt.name, tt.service, tt.ev.Type)
		}
		if err := handle(ctx, tt.ev); !errors.Is(err, svc.ErrBadEvent) {
			t.Errorf("%s: %v, want an error matching svc.ErrBadEvent", tt.name, err)
		}
	}
	// A type its handler does not take (a subscriber wired wrong).
	retyped := with(good, func(ev *svc.Event) { ev.Type = svc.EventUserSignedUp })
	if err := f.h.EventHandlers("notifications")[svc.EventPostPublished](ctx, retyped); !errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("a %s given to the %s handler: %v, want an error matching svc.ErrBadEvent", retyped.Type, good.Type, err)
	}
	if files, _ := filepathGlob(f.outbox, "*.eml"); len(files) != 0 {
		t.Errorf("bad events wrote e-mails: %v", files)
	}
}

// A handler that fails for a reason that passes (its store down) returns
// an error that is not svc.ErrBadEvent: the subscriber retries the event.
func TestEventHandlerOutageIsRetried(t *testing.T) {
	ms := apptest.NewMemStore()
	h := app.NewHandlers(app.NewServices(ms, bcrypt.MinCost), t.TempDir(), nil)
	ev := svc.NewEvent("content", svc.EventPostChanged, time.Now(), svc.PostChanged{PostID: ids.New(), AuthorID: ids.New()})
	ms.SetDown(true)
	err := h.EventHandlers("search")[svc.EventPostChanged](context.Background(), ev)
	if err == nil || errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("post.changed with the store down: %v, want an error that is not svc.ErrBadEvent", err)
	}
}

// The path of stage 10 without the transport: the content service over
// the wire writes its events into its outbox with each write; search's
// and notifications' handlers, each over its own store and reading posts
// through the content client (as their nodes do), apply every event twice.
// The post is found by search once published and not once deleted; the
// follower and the post's author are each told once.
func TestContentEventsReachSearchAndNotifications(t *testing.T) {
	ctx := context.Background()
	contentDB := openDB(t)
	d := content.Deps{Posts: posts.New(contentDB), Comments: comments.New(contentDB), Media: media.New(contentDB),
		Outbox: svc.OutboxOf(contentDB, content.Name)}
	cl, _ := rpctest.Serve(t, rpc.ServerConfig{Service: content.Name, Instance: "content-1"},
		func(srv *rpc.Server) { content.Register(srv, d) })
	postsClient, commentsClient := content.NewPosts(cl), content.NewComments(cl)

	users := accounts.New(openDB(t), bcrypt.MinCost)
	index, notes := search.New(openDB(t)), notify.New(openDB(t))
	consumers := map[string]*app.Handlers{
		search.Name: app.NewHandlers(app.Services{Posts: postsClient, Search: index}, t.TempDir(), nil),
		notify.Name: app.NewHandlers(app.Services{Posts: postsClient, Accounts: users, Notifications: notes}, t.TempDir(), nil),
	}
	// deliver takes the content outbox's events, as its publisher would,
	// and hands each to every consumer of its type twice.
	deliver := func() {
		t.Helper()
		evs, bad, _, err := d.Outbox.Pending(ctx, "", svc.MaxOutboxBatch)
		if err != nil || len(bad) > 0 {
			t.Fatalf("content outbox: %v (undecodable %v)", err, bad)
		}
		for _, ev := range evs {
			for service, h := range consumers {
				if handle := h.EventHandlers(service)[ev.Type]; handle != nil {
					for i := range 2 {
						if err := handle(ctx, ev); err != nil {
							t.Fatalf("%s: %s %s, delivery %d: %v", service, ev.Type, ev.ID, i+1, err)
						}
					}
				}
			}
			if err := d.Outbox.Remove(ctx, ev.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	signUp := func(handle string) accounts.User {
		t.Helper()
		u, err := users.SignUp(ctx, handle, handle+"@example.com", "a long passphrase of "+handle)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	alice, bob := signUp("alice"), signUp("bob")
	if err := users.Follow(ctx, bob.ID, alice.ID); err != nil {
		t.Fatal(err)
	}

	p, err := postsClient.Create(ctx, posts.Draft{AuthorID: alice.ID, Author: "alice", Title: "Quorum reads", Body: "Ask a majority.", Published: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := commentsClient.Create(ctx, p.ID, bob.ID, "bob", "Which majority?"); err != nil {
		t.Fatal(err)
	}
	deliver()
	if got, err := index.Query(ctx, "quorum", 10); err != nil || !slices.Equal(got, []string{p.ID}) {
		t.Errorf("search for the published post = %v, %v; want [%s]", got, err, p.ID)
	}
	for _, tt := range []struct {
		who  accounts.User
		kind string
	}{{bob, notify.KindPost}, {alice, notify.KindComment}} {
		ns, err := notes.List(ctx, tt.who.ID, 0)
		if err != nil || len(ns) != 1 || ns[0].Kind != tt.kind || ns[0].PostID != p.ID {
			t.Errorf("%s's notifications = %+v, %v; want one %q about %s", tt.who.Handle, ns, err, tt.kind, p.ID)
		}
	}

	if err := postsClient.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	deliver()
	if got, err := index.Query(ctx, "quorum", 10); err != nil || len(got) != 0 {
		t.Errorf("search for the deleted post = %v, %v; want none", got, err)
	}
}
