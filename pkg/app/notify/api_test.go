package notify_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The client is what the gateway gives the app as its Notifications.
var _ app.Notifications = (*notify.Client)(nil)

// overTheWire serves a notifications service over a real store on an
// httptest server and returns an rpc client of it.
func overTheWire(tb testing.TB) *rpc.Client {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	cl, _ := rpctest.Serve(tb, rpc.ServerConfig{Service: notify.Name, Instance: "notifications-1"},
		func(srv *rpc.Server) { notify.Register(srv, notify.New(db)) })
	return cl
}

func note(kind string, at time.Time) notify.Notification {
	id := ids.At(at)
	return notify.Notification{ID: id, Kind: kind, Actor: "alice", PostID: ids.At(at.Add(-time.Minute)),
		PostTitle: "Replication lag", CreatedAt: ids.Time(id).UTC()}
}

// The client over the wire does what the service does in-process: a
// notification added twice is there once, a list is newest first and
// arrives whole; a long list of users goes in several calls; the server
// refuses what it cannot key.
func TestAPIOverTheWire(t *testing.T) {
	cl := overTheWire(t)
	c := notify.NewClient(cl)
	ctx := context.Background()
	base := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	bob, carol, nobody := ids.At(base), ids.At(base), ids.At(base)
	first, second := note(notify.KindPost, base.Add(time.Second)), note(notify.KindComment, base.Add(2*time.Second))

	for range 2 {
		if err := c.Add(ctx, first, bob, carol); err != nil {
			t.Fatalf("Add(first) = %v", err)
		}
	}
	if err := c.Add(ctx, second, bob); err != nil {
		t.Fatalf("Add(second) = %v", err)
	}
	for _, tt := range []struct {
		user  string
		limit int
		want  []notify.Notification
	}{
		{bob, 0, []notify.Notification{second, first}},
		{bob, 1, []notify.Notification{second}},
		{carol, 10, []notify.Notification{first}},
		{nobody, 10, nil},
	} {
		got, err := c.List(ctx, tt.user, tt.limit)
		if err != nil {
			t.Fatalf("List(%s, %d) = %v", tt.user, tt.limit, err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("List(%s, %d) = %d notifications %+v, want %d", tt.user, tt.limit, len(got), got, len(tt.want))
			continue
		}
		for i := range got {
			g, w := got[i], tt.want[i]
			if g.ID != w.ID || g.Kind != w.Kind || g.Actor != w.Actor || g.PostID != w.PostID ||
				g.PostTitle != w.PostTitle || !g.CreatedAt.Equal(w.CreatedAt) {
				t.Errorf("List(%s, %d)[%d] = %+v, want %+v", tt.user, tt.limit, i, g, w)
			}
		}
	}

	// An author with more followers than one call takes: three calls, and
	// every follower has the notification.
	followers := make([]string, 2*notify.MaxAddUsers+1)
	for i := range followers {
		followers[i] = ids.At(base)
	}
	calls := cl.Status().Calls
	third := note(notify.KindPost, base.Add(3*time.Second))
	if err := c.Add(ctx, third, followers...); err != nil {
		t.Fatalf("Add to %d users = %v", len(followers), err)
	}
	if got := cl.Status().Calls - calls; got != 3 {
		t.Errorf("Add to %d users made %d calls, want 3", len(followers), got)
	}
	for _, u := range []string{followers[0], followers[notify.MaxAddUsers], followers[len(followers)-1]} {
		if got, err := c.List(ctx, u, 0); err != nil || len(got) != 1 || got[0].ID != third.ID {
			t.Errorf("List(%s) = %+v, %v; want the one notification %s", u, got, err, third.ID)
		}
	}

	// What the server refuses, each as a field error.
	badID, badKind := first, first
	badID.ID = "bob/" + first.ID
	badKind.Kind = "like"
	for _, tt := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"add with an id that is not one", func() error { return c.Add(ctx, badID, bob) }, "notification.id"},
		{"add of an unknown kind", func() error { return c.Add(ctx, badKind, bob) }, "notification.kind"},
		{"add to a user id with a slash", func() error { return c.Add(ctx, first, bob+"/x") }, "user_ids"},
		{"add to too many users in one call", func() error {
			_, err := rpc.Call(ctx, cl, notify.AddMethod, notify.AddRequest{Notification: first, UserIDs: followers[:notify.MaxAddUsers+1]})
			return err
		}, "user_ids"},
		{"list of no user", func() error { _, err := c.List(ctx, "", 10); return err }, "user_id"},
		{"list over the limit", func() error {
			_, err := rpc.Call(ctx, cl, notify.ListMethod, notify.ListRequest{UserID: bob, Limit: notify.MaxList + 1})
			return err
		}, "limit"},
	} {
		var fe *svc.FieldError
		if err := tt.call(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s = %v, want a field error on %s", tt.name, err, tt.field)
		}
	}
}
