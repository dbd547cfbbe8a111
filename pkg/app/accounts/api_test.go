package accounts_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The gateway uses the client as its accounts.
var _ app.Accounts = (*accounts.Client)(nil)

// users is a users service over a real store, served by a real rpc server
// and called through a real client.
type users struct {
	s   *accounts.Service
	out svc.EventOutbox
	cl  *accounts.Client
}

func newUsers(tb testing.TB) users {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	s := accounts.New(db, bcrypt.MinCost)
	c, _ := rpctest.Serve(tb, rpc.ServerConfig{Service: accounts.Name, Instance: "users-1", Codes: accounts.Codes},
		func(srv *rpc.Server) { accounts.Register(srv, s, s.Outbox()) })
	return users{s: s, out: s.Outbox(), cl: accounts.NewClient(c)}
}

// wantStatus checks that err is the service's answer under status, and
// that it matches want.
func wantStatus(tb testing.TB, what string, err, want error, status int) {
	tb.Helper()
	var re *rpc.Error
	if !errors.Is(err, want) || !errors.As(err, &re) || re.Status != status {
		tb.Errorf("%s = %v, want %v under %d", what, err, want, status)
	}
}

// wantField checks that err is a field error on field under status.
func wantField(tb testing.TB, what string, err error, field string, status int) {
	tb.Helper()
	var fe *svc.FieldError
	var re *rpc.Error
	if !errors.As(err, &fe) || fe.Field != field || !errors.As(err, &re) || re.Status != status {
		tb.Errorf("%s = %v, want a field error on %s under %d", what, err, field, status)
	}
}

func TestAccountsOverTheWire(t *testing.T) {
	u := newUsers(t)
	ctx := context.Background()

	ada, err := u.cl.SignUp(ctx, "Ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp(ada): %v", err)
	}
	if ada.ID == "" || ada.Handle != "ada" || ada.Email != "ada@example.com" || ada.CreatedAt.IsZero() {
		t.Fatalf("SignUp(ada) = %+v, want a new user ada", ada)
	}
	bob, err := u.cl.SignUp(ctx, "bob", "bob@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp(bob): %v", err)
	}

	// Sign-up refusals: the field, and the sentinel across the hop.
	_, err = u.cl.SignUp(ctx, "ADA", "other@example.com", "long enough")
	wantField(t, "SignUp(taken handle)", err, "handle", http.StatusConflict)
	wantStatus(t, "SignUp(taken handle)", err, svc.ErrExists, http.StatusConflict)
	_, err = u.cl.SignUp(ctx, "other", "BOB@example.com", "long enough")
	wantField(t, "SignUp(taken e-mail)", err, "email", http.StatusConflict)
	_, err = u.cl.SignUp(ctx, "carol", "carol@example.com", "12345678")
	wantField(t, "SignUp(common password)", err, "password", http.StatusBadRequest)
	_, err = u.cl.SignUp(ctx, "x", "x@example.com", "long enough")
	wantField(t, "SignUp(short handle)", err, "handle", http.StatusBadRequest)

	// Reads.
	if got, err := u.cl.Authenticate(ctx, "ADA", "long enough"); err != nil || got != ada {
		t.Errorf("Authenticate(ada) = %+v, %v; want %+v", got, err, ada)
	}
	_, err = u.cl.Authenticate(ctx, "ada", "wrong one")
	wantStatus(t, "Authenticate(wrong password)", err, svc.ErrBadCredentials, http.StatusUnauthorized)
	_, err = u.cl.Authenticate(ctx, "nobody", "long enough")
	wantStatus(t, "Authenticate(nobody)", err, svc.ErrBadCredentials, http.StatusUnauthorized)
	if got, err := u.cl.User(ctx, bob.ID); err != nil || got != bob {
		t.Errorf("User(bob) = %+v, %v; want %+v", got, err, bob)
	}
	_, err = u.cl.User(ctx, "1m9970000000z")
	wantStatus(t, "User(unknown)", err, svc.ErrNotFound, http.StatusNotFound)
	if got, err := u.cl.UserByHandle(ctx, "Bob"); err != nil || got != bob {
		t.Errorf("UserByHandle(Bob) = %+v, %v; want %+v", got, err, bob)
	}
	_, err = u.cl.UserByHandle(ctx, "nobody")
	wantStatus(t, "UserByHandle(nobody)", err, svc.ErrNotFound, http.StatusNotFound)

	// The follow graph; following twice is one follow.
	for range 2 {
		if err := u.cl.Follow(ctx, bob.ID, ada.ID); err != nil {
			t.Fatalf("Follow(bob, ada): %v", err)
		}
	}
	if ok, err := u.cl.IsFollowing(ctx, bob.ID, ada.ID); err != nil || !ok {
		t.Errorf("IsFollowing(bob, ada) = %v, %v; want true", ok, err)
	}
	if ok, err := u.cl.IsFollowing(ctx, ada.ID, bob.ID); err != nil || ok {
		t.Errorf("IsFollowing(ada, bob) = %v, %v; want false", ok, err)
	}
	if got, err := u.cl.Followers(ctx, ada.ID); err != nil || !slices.Equal(got, []string{bob.ID}) {
		t.Errorf("Followers(ada) = %v, %v; want [bob]", got, err)
	}
	if got, err := u.cl.Following(ctx, bob.ID); err != nil || !slices.Equal(got, []string{ada.ID}) {
		t.Errorf("Following(bob) = %v, %v; want [ada]", got, err)
	}
	if got, err := u.cl.Followers(ctx, bob.ID); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Followers(bob) = %#v, %v; want an empty list", got, err)
	}
	err = u.cl.Follow(ctx, ada.ID, ada.ID)
	wantField(t, "Follow(ada, ada)", err, "handle", http.StatusBadRequest)
	err = u.cl.Follow(ctx, "", ada.ID)
	wantField(t, "Follow(no follower)", err, "follower", http.StatusBadRequest)
	_, err = u.cl.Following(ctx, "")
	wantField(t, "Following(no id)", err, "id", http.StatusBadRequest)
	err = u.cl.Follow(ctx, ada.ID, "1m9970000000z")
	wantStatus(t, "Follow(unknown)", err, svc.ErrNotFound, http.StatusNotFound)
	for range 2 { // unfollowing someone not followed is not an error
		if err := u.cl.Unfollow(ctx, bob.ID, ada.ID); err != nil {
			t.Fatalf("Unfollow(bob, ada): %v", err)
		}
	}
	if ok, err := u.cl.IsFollowing(ctx, bob.ID, ada.ID); err != nil || ok {
		t.Errorf("IsFollowing(bob, ada) after Unfollow = %v, %v; want false", ok, err)
	}

	// The badge, granted by an event (in-process here), read over the wire.
	_, err = u.cl.Badge(ctx, ada.ID)
	wantStatus(t, "Badge(ada) before the event", err, svc.ErrNotFound, http.StatusNotFound)
	if _, err := u.s.ApplyBadgeEvent(ctx, "ev-1", ada.ID, "pay-1"); err != nil {
		t.Fatalf("ApplyBadgeEvent: %v", err)
	}
	if b, err := u.cl.Badge(ctx, ada.ID); err != nil || b.UserID != ada.ID || b.PaymentID != "pay-1" || b.EventID != "ev-1" {
		t.Errorf("Badge(ada) = %+v, %v; want the grant of pay-1 by ev-1", b, err)
	}
}

// A sign-up over the wire commits exactly one user.signed_up event with
// the account; a refused one writes none, whether it is refused before the
// store (a bad password) or by the transaction's own conditions (a taken
// handle: the event was in that transaction).
func TestSignUpWritesItsEvent(t *testing.T) {
	u := newUsers(t)
	ctx := context.Background()
	pending := func() []svc.Event {
		t.Helper()
		evs, bad, _, err := u.out.Pending(ctx, "", 0)
		if err != nil || len(bad) > 0 {
			t.Fatalf("Pending = %v, undecodable %v", err, bad)
		}
		return evs
	}
	if evs := pending(); len(evs) != 0 {
		t.Fatalf("outbox before any sign-up = %v, want empty", evs)
	}

	ada, err := u.cl.SignUp(ctx, "ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp(ada): %v", err)
	}
	evs := pending()
	if len(evs) != 1 {
		t.Fatalf("outbox after one sign-up = %d events, want 1: %v", len(evs), evs)
	}
	ev := evs[0]
	var d svc.UserSignedUp
	if err := ev.Decode(&d); err != nil {
		t.Fatal(err)
	}
	want := svc.UserSignedUp{UserID: ada.ID, Handle: "ada", Email: "ada@example.com"}
	if ev.Type != svc.EventUserSignedUp || ev.Source != accounts.Name || ev.ID == "" || ev.Time.IsZero() || d != want {
		t.Errorf("event = %+v with data %+v; want a %s from %s with %+v", ev, d, svc.EventUserSignedUp, accounts.Name, want)
	}

	for _, tt := range []struct{ what, handle, email, password string }{
		{"a taken handle", "ada", "ada2@example.com", "long enough"},
		{"a taken e-mail", "ada2", "ADA@example.com", "long enough"},
		{"a common password", "ada3", "ada3@example.com", "password"},
	} {
		if _, err := u.cl.SignUp(ctx, tt.handle, tt.email, tt.password); err == nil {
			t.Fatalf("SignUp with %s succeeded", tt.what)
		}
		if evs := pending(); len(evs) != 1 || evs[0].ID != ev.ID {
			t.Errorf("outbox after a sign-up refused for %s = %v, want ada's event alone", tt.what, evs)
		}
	}
}
