package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

// Buckets of the sessions service (shared sessions). No other service
// reads them.
const (
	bucketSessions       = "sessions.byid"     // session id -> Session as JSON
	bucketSessionExpires = "sessions.byexpiry" // expiry (unix seconds, 12 digits)/id -> ""
)

// sessionSweepEvery is how often Put removes a batch of expired sessions
// from the store, and sessionSweepBatch how many at most.
const (
	sessionSweepEvery = time.Minute
	sessionSweepBatch = 100
)

// SharedSessions keeps sessions where every app node finds them
// (--sessions=shared, stage 7): the store holds the durable copy, written
// through on every change; the cache tier holds a copy for fast reads,
// filled from the store on a miss. A user stays logged in when the app node
// that logged them in dies (any node reads the same store and cache) and
// when a cache node dies (the session is read back from the store and
// cached on another node). The cache copy follows the tier's invalidation
// scheme, so a logout cannot be undone by a reader filling the cache with
// the session it read just before (docs/cache-tier.md). Safe for
// concurrent use.
type SharedSessions struct {
	st   store.Store
	tier *cachetier.Tier
	now  func() time.Time

	mu        sync.Mutex
	nextSweep time.Time
}

// NewSharedSessions returns sessions in st, cached through tier (nil: the
// store only, every request reads it).
func NewSharedSessions(st store.Store, tier *cachetier.Tier) *SharedSessions {
	return &SharedSessions{st: st, tier: tier, now: time.Now}
}

func sessionKey(id string) string { return "sess:" + id }

// validSessionID reports whether id could have come from NewSessionID, so
// that junk cookies cost no lookup.
func validSessionID(id string) bool {
	if len(id) != 43 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Get implements Sessions: the cache first, the store on a miss.
func (ss *SharedSessions) Get(ctx context.Context, id string) (Session, error) {
	if !validSessionID(id) {
		return Session{}, ErrNoSession
	}
	load := func(ctx context.Context) ([]byte, error) {
		raw, err := ss.st.Get(ctx, bucketSessions, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNoSession
		}
		if err != nil {
			return nil, fmt.Errorf("sessions: get: %w", err)
		}
		return raw, nil
	}
	var raw []byte
	var err error
	if ss.tier != nil {
		// Session lookups are not part of what the page's X-App-Cache says.
		raw, _, err = ss.tier.Fetch(cachetier.WithTrace(ctx, nil), sessionKey(id), load)
	} else {
		raw, err = load(ctx)
	}
	if err != nil {
		return Session{}, err
	}
	var s Session
	if err := json.Unmarshal(raw, &s); err != nil {
		return Session{}, fmt.Errorf("sessions: decode %s: %w", id, err)
	}
	if s.ID != id || !ss.now().Before(s.Expires) {
		return Session{}, ErrNoSession
	}
	return s, nil
}

func expiryKey(t time.Time, id string) string {
	return kv.Join(fmt.Sprintf("%012d", max(t.Unix(), 0)), id)
}

// Put implements Sessions: the store first (the durable copy), then the
// cache. A new session is put in the cache at once (no copy of it can exist
// anywhere yet); a changed one is invalidated everywhere, like any other
// write, and read back by the next request.
func (ss *SharedSessions) Put(ctx context.Context, s Session) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("sessions: encode: %w", err)
	}
	write := []store.Op{
		store.Put(bucketSessions, s.ID, raw),
		store.Put(bucketSessionExpires, expiryKey(s.Expires, s.ID), nil),
	}
	wctx, lsn := writeTrace(ctx)
	_, err = ss.st.Txn(wctx, append([]store.Op{store.IfAbsent(bucketSessions, s.ID)}, write...)...)
	if err == nil {
		lsn()
		if ss.tier != nil {
			ss.tier.Prime(ctx, sessionKey(s.ID), raw)
		}
		ss.maybeSweep(ctx)
		return nil
	}
	if errors.Is(err, store.ErrConditionFailed) {
		_, err = ss.st.Txn(wctx, write...)
	}
	at := lsn()
	if ss.tier != nil {
		// Also on an error: the write may have committed.
		ss.tier.Invalidate(ctx, at, sessionKey(s.ID))
	}
	if err != nil {
		return fmt.Errorf("sessions: put: %w", err)
	}
	return nil
}

// Delete implements Sessions: the store first, then the cache's copy is
// invalidated, so no node finds the session after a logout.
func (ss *SharedSessions) Delete(ctx context.Context, id string) error {
	if !validSessionID(id) {
		return nil
	}
	wctx, lsn := writeTrace(ctx)
	// The expiry index entry is left for the sweep, which drops entries
	// whose session is gone.
	_, err := ss.st.Txn(wctx, store.Delete(bucketSessions, id))
	if ss.tier != nil {
		ss.tier.Invalidate(ctx, lsn(), sessionKey(id))
	}
	if err != nil {
		return fmt.Errorf("sessions: delete: %w", err)
	}
	return nil
}

// maybeSweep removes a bounded batch of expired sessions from the store,
// at most once a minute per app process, so the store does not keep every
// session ever made. Several app nodes sweeping at once is harmless.
func (ss *SharedSessions) maybeSweep(ctx context.Context) {
	ss.mu.Lock()
	now := ss.now()
	if now.Before(ss.nextSweep) {
		ss.mu.Unlock()
		return
	}
	ss.nextSweep = now.Add(sessionSweepEvery)
	ss.mu.Unlock()
	_ = ss.Sweep(ctx, now)
}

// Sweep removes up to a batch of sessions that expired before now from the
// store (their cached copies expire on their own: Get checks Expires).
func (ss *SharedSessions) Sweep(ctx context.Context, now time.Time) error {
	pairs, err := kv.Scan(ctx, ss.st, bucketSessionExpires, store.ScanOptions{
		End: fmt.Sprintf("%012d", now.Unix()), Limit: sessionSweepBatch})
	if err != nil || len(pairs) == 0 {
		return err
	}
	var ops []store.Op
	for _, p := range pairs {
		ops = append(ops, store.Delete(bucketSessionExpires, p.Key))
		if len(p.Key) < 43 {
			continue
		}
		id := p.Key[len(p.Key)-43:]
		raw, err := ss.st.Get(ctx, bucketSessions, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sessions: sweep: %w", err)
		}
		var s Session
		// A session whose expiry moved later is kept; its new index entry
		// stays.
		if json.Unmarshal(raw, &s) == nil && now.Before(s.Expires) {
			continue
		}
		ops = append(ops, store.IfEqual(bucketSessions, id, raw), store.Delete(bucketSessions, id))
	}
	if _, err := ss.st.Txn(ctx, ops...); err != nil && !errors.Is(err, store.ErrConditionFailed) {
		return fmt.Errorf("sessions: sweep: %w", err)
	}
	return nil
}
