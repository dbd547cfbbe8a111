package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Session is a logged-in browser or API client, found by the ID in its cookie.
type Session struct {
	ID     string
	UserID string
	Handle string
	// LastLSN is the store LSN of the user's last write, so that a later
	// stage can read from a replica that has at least it (read your writes).
	LastLSN uint64
	Expires time.Time
}

// ErrNoSession: the session does not exist or has expired.
var ErrNoSession = errors.New("no session")

// Sessions stores sessions. The memory implementation lives in one app
// process (stage 3 needs sticky routing for it); a shared one in the cache
// comes with stage 7.
type Sessions interface {
	// Get returns a live session, or ErrNoSession.
	Get(ctx context.Context, id string) (Session, error)
	// Put creates or replaces a session.
	Put(ctx context.Context, s Session) error
	// Delete removes a session; deleting a missing one is not an error.
	Delete(ctx context.Context, id string) error
}

// NewSessionID returns 256 random bits, URL-safe.
func NewSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// MemorySessions keeps sessions in this process's memory. Expired sessions
// are dropped when read and swept at most once a minute on writes, so it
// needs no goroutine. Safe for concurrent use.
type MemorySessions struct {
	now func() time.Time

	mu        sync.Mutex
	m         map[string]Session
	nextSweep time.Time
}

// NewMemorySessions returns an empty store.
func NewMemorySessions() *MemorySessions {
	return &MemorySessions{now: time.Now, m: map[string]Session{}}
}

// Get implements Sessions.
func (ms *MemorySessions) Get(_ context.Context, id string) (Session, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s, ok := ms.m[id]
	if !ok {
		return Session{}, ErrNoSession
	}
	if !ms.now().Before(s.Expires) {
		delete(ms.m, id)
		return Session{}, ErrNoSession
	}
	return s, nil
}

// Put implements Sessions.
func (ms *MemorySessions) Put(_ context.Context, s Session) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	now := ms.now()
	if now.After(ms.nextSweep) {
		for id, old := range ms.m {
			if !now.Before(old.Expires) {
				delete(ms.m, id)
			}
		}
		ms.nextSweep = now.Add(time.Minute)
	}
	ms.m[s.ID] = s
	return nil
}

// Delete implements Sessions.
func (ms *MemorySessions) Delete(_ context.Context, id string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.m, id)
	return nil
}

// Len returns the number of sessions held (live or not yet swept).
func (ms *MemorySessions) Len() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.m)
}
