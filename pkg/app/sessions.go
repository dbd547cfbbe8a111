package app

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// Session is a logged-in browser or API client, found by the ID in its cookie.
type Session struct {
	ID     string
	UserID string
	Handle string
	// LastLSNs are the store LSNs of the user's last writes, one per store
	// group written, so that a read may be served by a replica of that
	// group that has at least its LSN (read your writes, stage 4). LSNs of
	// different groups are never compared (stage 10).
	LastLSNs store.LSNs
	Expires  time.Time
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

// DefaultMaxMemorySessions is how many sessions a MemorySessions holds by
// default: about 20 MB of sessions, far more users than one stage-3 app
// node serves.
const DefaultMaxMemorySessions = 100_000

// MemorySessions keeps sessions in this process's memory, at most max of
// them: past that the least recently used is dropped (its user is logged
// out), so that a client creating sessions in a loop cannot grow the map
// until the process dies. Expired sessions are dropped when read and swept
// at most once a minute on writes, so it needs no goroutine. Safe for
// concurrent use.
type MemorySessions struct {
	now func() time.Time
	max int

	mu        sync.Mutex
	m         map[string]*list.Element // of Session
	order     *list.List               // most recently used at the front
	nextSweep time.Time
	evicted   uint64
}

// NewMemorySessions returns an empty store of at most
// DefaultMaxMemorySessions sessions.
func NewMemorySessions() *MemorySessions { return NewMemorySessionsMax(DefaultMaxMemorySessions) }

// NewMemorySessionsMax returns an empty store of at most n sessions (at
// least one).
func NewMemorySessionsMax(n int) *MemorySessions {
	return &MemorySessions{now: time.Now, max: max(n, 1), m: map[string]*list.Element{}, order: list.New()}
}

// Get implements Sessions.
func (ms *MemorySessions) Get(_ context.Context, id string) (Session, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	e, ok := ms.m[id]
	if !ok {
		return Session{}, ErrNoSession
	}
	s := e.Value.(Session)
	if !ms.now().Before(s.Expires) {
		ms.remove(e)
		return Session{}, ErrNoSession
	}
	ms.order.MoveToFront(e)
	return s, nil
}

// Put implements Sessions.
func (ms *MemorySessions) Put(_ context.Context, s Session) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	now := ms.now()
	if now.After(ms.nextSweep) {
		for e := ms.order.Back(); e != nil; {
			prev := e.Prev()
			if !now.Before(e.Value.(Session).Expires) {
				ms.remove(e)
			}
			e = prev
		}
		ms.nextSweep = now.Add(time.Minute)
	}
	if e, ok := ms.m[s.ID]; ok {
		e.Value = s
		ms.order.MoveToFront(e)
		return nil
	}
	for len(ms.m) >= ms.max {
		ms.remove(ms.order.Back())
		ms.evicted++
	}
	ms.m[s.ID] = ms.order.PushFront(s)
	return nil
}

func (ms *MemorySessions) remove(e *list.Element) {
	delete(ms.m, e.Value.(Session).ID)
	ms.order.Remove(e)
}

// Delete implements Sessions.
func (ms *MemorySessions) Delete(_ context.Context, id string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if e, ok := ms.m[id]; ok {
		ms.remove(e)
	}
	return nil
}

// Len returns the number of sessions held (live or not yet swept).
func (ms *MemorySessions) Len() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.m)
}

// Evicted returns how many sessions were dropped to stay within the cap.
func (ms *MemorySessions) Evicted() uint64 {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.evicted
}
