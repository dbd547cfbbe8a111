package app_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/store"
)

// Issue 14, finding 4: while the store failed over, a session read that
// failed was taken for "no session", and logged-in users got 401 "log in
// first". These tests fail the store as a failover does and check that
// nobody is logged out.

// Errors a store client returns while the primary changes hands.
var (
	errLeaseLapsed = fmt.Errorf("node store-1: strong read: lease not renewed in time, refusing writes until it is: %w", store.ErrNotPrimary)
	errPrimaryDead = fmt.Errorf("node store-1 (127.0.0.9:7000): %w: connection refused", store.ErrUnavailable)
	errNoPrimary   = fmt.Errorf("node store-2 is a replica and knows no primary yet: %w", store.ErrNotPrimary)
)

// failoverStore is a store.Store that fails as one failing over does: the
// next calls with a given error, and, while the primary is gone, every
// call that needs the primary (writes and strong reads), replicas still
// answering the reads that allow them.
type failoverStore struct {
	store.Store

	mu             sync.Mutex
	failing        int   // calls left to fail with err
	err            error // what they fail with
	primaryGone    bool
	replicaMissing bool // replicas have not applied the latest writes
	// failSessionWrites fails every transaction on the sessions bucket.
	failSessionWrites bool

	replicaReads        atomic.Int64 // reads that allowed a replica to answer
	sessionWritesFailed atomic.Int64 // transactions failed by failSessionWrites
}

// failNext makes the next n calls fail with err.
func (f *failoverStore) failNext(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing, f.err = n, err
}

// check returns the error a call fails with, if any; read says whether the
// call is a read, which a replica may answer when ctx allows it.
func (f *failoverStore) check(ctx context.Context, read bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing > 0 {
		f.failing--
		return f.err
	}
	if c, _ := store.ConsistencyFrom(ctx); read && c != store.Strong {
		f.replicaReads.Add(1)
		if f.replicaMissing {
			return fmt.Errorf("replica store-2: %w", store.ErrNotFound)
		}
		return nil
	}
	if f.primaryGone {
		return errNoPrimary
	}
	return nil
}

func (f *failoverStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := f.check(ctx, true); err != nil {
		return nil, err
	}
	return f.Store.Get(ctx, bucket, key)
}

func (f *failoverStore) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	if err := f.check(ctx, true); err != nil {
		return nil, err
	}
	return f.Store.Scan(ctx, bucket, opts)
}

func (f *failoverStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	if err := f.check(ctx, false); err != nil {
		return 0, err
	}
	f.mu.Lock()
	failSession := f.failSessionWrites
	f.mu.Unlock()
	for _, op := range ops {
		if failSession && op.Bucket == "sessions.byid" {
			f.sessionWritesFailed.Add(1)
			return 0, errLeaseLapsed
		}
	}
	return f.Store.Txn(ctx, ops...)
}

// A failover shorter than the sessions' read window: every request of a
// logged-in user succeeds, later than usual, and no request is answered as
// for a stranger.
func TestSessionOutlivesShortStoreFailover(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"lease lapsed", errLeaseLapsed},
		{"primary dead", errPrimaryDead},
		{"no primary yet", errNoPrimary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := &failoverStore{Store: apptest.NewMemStore()}
			s := newStackOn(t, fs, func(c *app.Config, d *app.Deps) { c.Sessions = "shared" })
			alice := s.client(t)
			alice.signup("alice")

			// Each request's first store call is its session read; the
			// store fails it and its next try, then is back.
			fs.failNext(2, tt.err)
			r := alice.get("/api/v1/me")
			want(t, "me during a failover", r, http.StatusOK)
			if got := r.JSON(t)["user"].(map[string]any)["handle"]; got != "alice" {
				t.Fatalf("me during a failover = %v, want alice", got)
			}
			fs.failNext(2, tt.err)
			want(t, "new-post page during a failover", alice.get("/new"), http.StatusOK)
			fs.failNext(2, tt.err)
			want(t, "post during a failover", alice.json("POST", "/api/v1/posts", map[string]any{"title": "Still here", "body": "b"}), http.StatusCreated)
		})
	}
}

// The same through the cache tier: after a write the session's cached copy
// is invalidated (its LastLSN changed), so the next request reads the store
// while it fails over.
func TestSessionOutlivesShortStoreFailoverWithCache(t *testing.T) {
	fs := &failoverStore{Store: apptest.NewMemStore()}
	s := newCacheStack(t, "127.0.0.1:0", fs, cacheNodes(startCache(t, "127.0.0.1:0")),
		func(c *app.Config, d *app.Deps) { c.Sessions = "shared" })
	bob := s.client(t)
	bob.signup("bob")
	bob.post("Invalidates the session's copy", "b")

	fs.failNext(2, errLeaseLapsed)
	want(t, "me during a failover, session not in the cache", bob.get("/api/v1/me"), http.StatusOK)
}

// A store outage longer than the read window: requests that need the user
// get 503 with Retry-After, never 401, a redirect to the login page or a
// cleared cookie; once the store is back the user is still logged in.
func TestSessionOutlivesLongStoreOutage(t *testing.T) {
	ms := apptest.NewMemStore()
	ss := app.NewSharedSessions(ms, nil)
	ss.ReadWindow = 300 * time.Millisecond
	s := newStackOn(t, ms, func(c *app.Config, d *app.Deps) { d.SessionStore = ss })
	carol := s.client(t)
	carol.signup("carol")

	ms.SetDown(true)
	for _, tt := range []struct {
		what string
		do   func() response
	}{
		{"GET /api/v1/me", func() response { return carol.get("/api/v1/me") }},
		{"POST /api/v1/posts", func() response {
			return carol.json("POST", "/api/v1/posts", map[string]any{"title": "t", "body": "b"})
		}},
		{"POST /api/v1/logout", func() response { return carol.json("POST", "/api/v1/logout", nil) }},
		{"GET /new", func() response { return carol.get("/new") }},
		{"GET /following", func() response { return carol.get("/following") }},
		{"GET /", func() response { return carol.get("/") }},
		{"POST /logout", func() response { return carol.form("/logout") }},
	} {
		r := tt.do()
		if r.Code != http.StatusServiceUnavailable {
			t.Errorf("%s while the store is down: status %d, want 503; Location %q, body %.200s",
				tt.what, r.Code, r.Header.Get("Location"), r.Body)
			continue
		}
		if got := r.Header.Get("Retry-After"); got == "" {
			t.Errorf("%s while the store is down: 503 without Retry-After", tt.what)
		}
		if got := r.Header.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("%s while the store is down: Set-Cookie %q, want the cookie left alone", tt.what, got)
		}
		if strings.Contains(strings.ToLower(r.String()), "log in") {
			t.Errorf("%s while the store is down: the answer asks to log in: %.200s", tt.what, r.Body)
		}
	}

	ms.SetDown(false)
	r := carol.get("/api/v1/me")
	want(t, "me after the outage", r, http.StatusOK)
	if got := r.JSON(t)["user"].(map[string]any)["handle"]; got != "carol" {
		t.Fatalf("me after the outage = %v, want carol", got)
	}
}

// SharedSessions.Get while the store has no primary: the retry reads a
// replica, well within the window; a replica that does not have the
// session (a login it has not applied yet) does not end it; and a store
// that stays down is given up on after the window, with an error that is
// not ErrNoSession.
func TestSharedSessionsGetDuringFailover(t *testing.T) {
	ctx := context.Background()
	fs := &failoverStore{Store: apptest.NewMemStore()}
	ss := app.NewSharedSessions(fs, nil)
	ss.ReadWindow = 2 * time.Second
	sess := app.Session{ID: app.NewSessionID(), UserID: "u1", Handle: "dan", Expires: time.Now().Add(time.Hour)}
	if err := ss.Put(ctx, sess); err != nil {
		t.Fatalf("Put: %v", err)
	}

	fs.mu.Lock()
	fs.primaryGone = true
	fs.mu.Unlock()
	start := time.Now()
	got, err := ss.Get(ctx, sess.ID)
	if err != nil || got.Handle != "dan" {
		t.Fatalf("Get with no primary = %+v, %v; want dan's session from a replica", got, err)
	}
	if took := time.Since(start); took >= ss.ReadWindow {
		t.Errorf("Get with no primary took %v, want less than the window (%v): a replica answers the retry", took, ss.ReadWindow)
	}
	if fs.replicaReads.Load() == 0 {
		t.Errorf("Get with no primary read no replica")
	}

	fs.mu.Lock()
	fs.replicaMissing = true
	fs.mu.Unlock()
	ss.ReadWindow = 300 * time.Millisecond
	start = time.Now()
	_, err = ss.Get(ctx, sess.ID)
	if err == nil || errors.Is(err, app.ErrNoSession) {
		t.Fatalf("Get with no primary and a replica without the session: err = %v, want a store error, not ErrNoSession", err)
	}
	if !errors.Is(err, store.ErrNotPrimary) && !errors.Is(err, store.ErrBehind) {
		t.Errorf("Get with no primary: err = %v, want ErrNotPrimary or ErrBehind", err)
	}
	if took := time.Since(start); took > 5*ss.ReadWindow {
		t.Errorf("Get with no primary took %v, want about the window (%v)", took, ss.ReadWindow)
	}

	// Once the primary is back, the session is there, and a session that
	// does not exist is ErrNoSession at once.
	fs.mu.Lock()
	fs.primaryGone, fs.replicaMissing = false, false
	fs.mu.Unlock()
	if got, err := ss.Get(ctx, sess.ID); err != nil || got.Handle != "dan" {
		t.Fatalf("Get after the failover = %+v, %v; want dan's session", got, err)
	}
	if _, err := ss.Get(ctx, app.NewSessionID()); err != app.ErrNoSession {
		t.Errorf("Get(unknown id) err = %v, want ErrNoSession", err)
	}
}

// Every 503 the app answers because its store cannot serve the request
// carries Retry-After, on pages and in the API: the load balancer reads it
// as "this node is up, its store is not" and does not eject the node.
func TestStore503sCarryRetryAfter(t *testing.T) {
	for _, err := range []error{errLeaseLapsed, errPrimaryDead, store.ErrStaleEpoch, store.ErrBehind, store.ErrSyncTimeout,
		fmt.Errorf("store get: %w", context.DeadlineExceeded)} {
		fs := &failoverStore{Store: apptest.NewMemStore()}
		s := newStackOn(t, fs)
		fs.failNext(1<<30, err)
		for _, path := range []string{"/", "/api/v1/posts"} {
			r := s.client(t).get(path)
			if r.Code != http.StatusServiceUnavailable {
				t.Errorf("GET %s with the store failing with %q: status %d, want 503", path, err, r.Code)
				continue
			}
			if got := r.Header.Get("Retry-After"); !smallSeconds(got) {
				t.Errorf("GET %s with the store failing with %q: Retry-After %q, want 1 to 5 seconds", path, err, got)
			}
		}
	}
}

// smallSeconds reports whether a Retry-After value is 1 to 5 seconds.
func smallSeconds(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 1 && n <= 5
}

// A session write in a request (the LastLSN that noteWrite keeps after a
// user's write) that fails does not fail the request, which has done its
// work, nor log the user out.
func TestFailedSessionWriteKeepsTheUser(t *testing.T) {
	fs := &failoverStore{Store: apptest.NewMemStore()}
	s := newStackOn(t, fs, func(c *app.Config, d *app.Deps) { c.Sessions = "shared" })
	s.client(t).signup("fay")
	erin := s.client(t)
	erin.signup("erin")

	fs.mu.Lock()
	fs.failSessionWrites = true
	fs.mu.Unlock()
	want(t, "post whose session update fails", erin.json("POST", "/api/v1/posts", map[string]any{"title": "Saved", "body": "b"}), http.StatusCreated)
	want(t, "follow whose session update fails", erin.form("/u/fay/follow"), http.StatusSeeOther)
	fs.mu.Lock()
	fs.failSessionWrites = false
	fs.mu.Unlock()
	if got := fs.sessionWritesFailed.Load(); got < 2 {
		t.Fatalf("%d session writes failed, want one for each of the 2 writes", got)
	}
	r := erin.get("/api/v1/me")
	want(t, "me after a failed session write", r, http.StatusOK)
	if got := r.JSON(t)["user"].(map[string]any)["handle"]; got != "erin" {
		t.Fatalf("me after a failed session write = %v, want erin", got)
	}
}
