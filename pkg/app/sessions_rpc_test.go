package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// usersNode is the users service as its node serves it: accounts and the
// shared sessions over one store, on one rpc server whose codes are both
// lists; the gateway's side is a client with the same codes.
type usersNode struct {
	sessions app.Sessions // the gateway's: over the wire
	log      *bytes.Buffer

	mu   sync.Mutex
	urls []string // every request's URL, as an access log would see it
}

func newUsersNode(tb testing.TB, st store.Store, edit func(*app.SharedSessions)) *usersNode {
	tb.Helper()
	n := &usersNode{log: &bytes.Buffer{}}
	codes := append(append([]rpc.Code{}, accounts.Codes...), app.SessionCodes...)
	srv, err := rpc.NewServer(rpc.ServerConfig{Service: accounts.Name, Instance: "users-1", Codes: codes,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: n.log, mu: &n.mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		tb.Fatal(err)
	}
	acc := accounts.New(st, bcrypt.MinCost)
	accounts.Register(srv, acc, acc.Outbox())
	ss := app.NewSharedSessions(st, nil)
	if edit != nil {
		edit(ss)
	}
	app.RegisterSessions(srv, ss)
	hs := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		n.urls = append(n.urls, r.URL.String())
		n.mu.Unlock()
		srv.ServeHTTP(rw, r)
	}))
	tb.Cleanup(hs.Close)
	c, err := rpc.New(rpc.Config{Service: accounts.Name, Codes: codes,
		Instances: func() []rpc.Instance { return []rpc.Instance{{Name: "users-1", Addr: hs.Listener.Addr().String()}} }})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	n.sessions = app.NewSessionsClient(c)
	return n
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// wantNoLeak checks that no request URL and no log line of the service
// holds a session id.
func (n *usersNode) wantNoLeak(tb testing.TB, ids ...string) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range ids {
		for _, u := range n.urls {
			if strings.Contains(u, id) {
				tb.Errorf("request URL %q holds session id %s", u, id)
			}
		}
		if strings.Contains(n.log.String(), id) {
			tb.Errorf("the service's log holds session id %s:\n%s", id, n.log)
		}
	}
}

func TestSessionsOverTheWire(t *testing.T) {
	db := openDB(t)
	n := newUsersNode(t, db, nil)
	ss := n.sessions
	ctx := context.Background()

	// A session with an LSN in three groups (the default one included) and
	// an expiry in another zone, to the nanosecond.
	expires := time.Now().Add(time.Hour).In(time.FixedZone("UTC+5", 5*3600))
	s := app.Session{ID: app.NewSessionID(), UserID: "1m9970000000a", Handle: "ada",
		LastLSNs: store.LSNs{"": 12, "users": 7, "content": 1 << 40}, Expires: expires}
	if _, err := ss.Get(ctx, s.ID); err != app.ErrNoSession {
		t.Fatalf("Get before Put = %v, want ErrNoSession itself", err)
	}
	if err := ss.Put(ctx, s); err != nil {
		t.Fatalf("Put: %v", err)
	}
	got, err := ss.Get(ctx, s.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.ID != s.ID || got.UserID != s.UserID || got.Handle != s.Handle || !maps.Equal(got.LastLSNs, s.LastLSNs) || !got.Expires.Equal(s.Expires) {
		t.Errorf("Get = %+v, want %+v", got, s)
	}

	// Put replaces the session: the LSNs move on, in one group only.
	s.LastLSNs = s.LastLSNs.With("users", 8)
	if err := ss.Put(ctx, s); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	if got, err := ss.Get(ctx, s.ID); err != nil || !maps.Equal(got.LastLSNs, s.LastLSNs) {
		t.Errorf("Get after a second Put = %v (%+v), %v; want LSNs %v", got.LastLSNs, got, err, s.LastLSNs)
	}

	// No LSN at all: none comes back.
	fresh := app.Session{ID: app.NewSessionID(), UserID: "1m9970000000b", Handle: "bob", Expires: expires}
	if err := ss.Put(ctx, fresh); err != nil {
		t.Fatalf("Put(fresh): %v", err)
	}
	if got, err := ss.Get(ctx, fresh.ID); err != nil || len(got.LastLSNs) != 0 || got.UserID != fresh.UserID {
		t.Errorf("Get(fresh) = %+v, %v; want bob's session without LSNs", got, err)
	}

	// Delete, twice: gone, and deleting a missing one is not an error.
	for i := range 2 {
		if err := ss.Delete(ctx, s.ID); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := ss.Get(ctx, s.ID); err != app.ErrNoSession {
		t.Errorf("Get after Delete = %v, want ErrNoSession itself", err)
	}

	// Expired: none.
	old := app.Session{ID: app.NewSessionID(), UserID: "1m9970000000c", Handle: "cy", Expires: time.Now().Add(-time.Minute)}
	if err := ss.Put(ctx, old); err != nil {
		t.Fatalf("Put(expired): %v", err)
	}
	if _, err := ss.Get(ctx, old.ID); err != app.ErrNoSession {
		t.Errorf("Get(expired) = %v, want ErrNoSession itself", err)
	}

	// An id NewSessionID could not have made: no session, a field error
	// to put, nothing to delete.
	if _, err := ss.Get(ctx, "short"); err != app.ErrNoSession {
		t.Errorf("Get(junk id) = %v, want ErrNoSession itself", err)
	}
	var fe *svc.FieldError
	var re *rpc.Error
	bad := fresh
	bad.ID = "short"
	if err := ss.Put(ctx, bad); !errors.As(err, &fe) || fe.Field != "id" || !errors.As(err, &re) || re.Status != http.StatusBadRequest {
		t.Errorf("Put(junk id) = %v, want a field error on id under 400", err)
	}
	if err := ss.Delete(ctx, "short"); err != nil {
		t.Errorf("Delete(junk id) = %v, want nil", err)
	}

	// A record the service cannot read is no session, but not plainly:
	// the error wraps ErrNoSession, so the gateway logs it.
	broken := app.NewSessionID()
	sum := sha256.Sum256([]byte(broken))
	if _, err := db.Txn(ctx, store.Put("sessions.byid", hex.EncodeToString(sum[:]), []byte("{not json"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Get(ctx, broken); !errors.Is(err, app.ErrNoSession) || err == app.ErrNoSession {
		t.Errorf("Get(damaged record) = %v, want an error wrapping ErrNoSession", err)
	}

	n.wantNoLeak(t, s.ID, fresh.ID, old.ID, broken)
}

// A session read that fails because the users service's store is down is
// not "no session" on the gateway's side either: the user stays logged in
// and gets a 503.
func TestSessionsOverTheWireStoreDown(t *testing.T) {
	ms := apptest.NewMemStore()
	n := newUsersNode(t, ms, func(ss *app.SharedSessions) { ss.ReadWindow = 100 * time.Millisecond })
	ctx := context.Background()
	s := app.Session{ID: app.NewSessionID(), UserID: "1m9970000000a", Handle: "ada", Expires: time.Now().Add(time.Hour)}
	if err := n.sessions.Put(ctx, s); err != nil {
		t.Fatalf("Put: %v", err)
	}
	ms.SetDown(true)
	// The service tries for its ReadWindow, then answers unavailable
	// (whether the store's error or the window's deadline ended it): a
	// 503, which opens no breaker, and never no_session.
	_, err := n.sessions.Get(ctx, s.ID)
	var re *rpc.Error
	if errors.Is(err, app.ErrNoSession) || !errors.Is(err, rpc.ErrUnavailable) || !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Errorf("Get with the store down = %v, want rpc.ErrUnavailable under 503, not ErrNoSession", err)
	}
	ms.SetDown(false)
	if got, err := n.sessions.Get(ctx, s.ID); err != nil || got.UserID != s.UserID {
		t.Errorf("Get with the store back = %+v, %v; want ada's session", got, err)
	}
	n.wantNoLeak(t, s.ID)
}
