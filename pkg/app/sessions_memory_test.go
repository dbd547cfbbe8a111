package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
)

// The memory store holds at most its cap: past it the least recently used
// session goes, and a session that was read recently stays.
func TestMemorySessionsCapped(t *testing.T) {
	ctx := context.Background()
	ms := app.NewMemorySessionsMax(3)
	session := func(name string) app.Session {
		return app.Session{ID: name, UserID: name, Handle: name, Expires: time.Now().Add(time.Hour)}
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := ms.Put(ctx, session(id)); err != nil {
			t.Fatalf("Put(%s): %v", id, err)
		}
	}
	if _, err := ms.Get(ctx, "a"); err != nil { // a is now the most recently used
		t.Fatalf("Get(a): %v", err)
	}
	for i := range 1000 {
		if err := ms.Put(ctx, session(fmt.Sprint("flood-", i))); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if i == 0 {
			for id, want := range map[string]error{"a": nil, "b": app.ErrNoSession, "c": nil} {
				if _, err := ms.Get(ctx, id); err != want {
					t.Errorf("after one session over the cap: Get(%s) error %v, want %v", id, err, want)
				}
			}
		}
	}
	if got, want := ms.Len(), 3; got != want {
		t.Errorf("Len() after 1003 sessions = %d, want the cap %d", got, want)
	}
	if got, want := ms.Evicted(), uint64(1000); got != want {
		t.Errorf("Evicted() = %d, want %d", got, want)
	}
	// Replacing a session (a write updates its LSN) does not count twice.
	if err := ms.Put(ctx, session("flood-999")); err != nil || ms.Len() != 3 {
		t.Errorf("Put of a held session: %v, Len %d, want nil, 3", err, ms.Len())
	}
}

// The app's memory sessions take their cap from Config.MaxMemorySessions: a
// third user logging in logs out the one least recently seen.
func TestAppMemorySessionsCapped(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.DataDir, cfg.MaxMemorySessions = t.TempDir(), 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "MaxMemorySessions") {
		t.Errorf("Validate() with MaxMemorySessions 0 = %v, want an error naming it", err)
	}
	s, _ := newMemStack(t, func(c *app.Config, d *app.Deps) { c.MaxMemorySessions = 2 })
	first, second, third := s.client(t), s.client(t), s.client(t)
	first.signup("first")
	second.signup("second")
	want(t, "first user's /api/v1/me", first.get("/api/v1/me"), http.StatusOK) // first is now more recent than second
	third.signup("third")
	want(t, "third user's /api/v1/me", third.get("/api/v1/me"), http.StatusOK)
	want(t, "first user's /api/v1/me", first.get("/api/v1/me"), http.StatusOK)
	want(t, "second user's /api/v1/me after two later logins", second.get("/api/v1/me"), http.StatusUnauthorized)
}
