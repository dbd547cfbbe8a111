package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

// Buckets of the sessions service (shared sessions). No other service
// reads them.
const (
	bucketSessions       = "sessions.byid"     // storedID(session id) -> sessionRecord as JSON
	bucketSessionExpires = "sessions.byexpiry" // expiry (unix seconds, 12 digits)/storedID -> ""
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
//
// A read that fails because the store is failing over or out of reach is
// tried again for up to ReadWindow, the later tries allowing a replica to
// answer (see Get): a store outage must not log anybody out.
//
// Neither the store nor the cache holds a session id: both key a session
// by the SHA-256 of its id (storedID), and the record does not carry the
// id, so a dump of either yields no cookie that logs anybody in. The id
// has 256 random bits, so an unsalted hash is enough (nothing to guess).
// Sessions made before ids were hashed are no longer found (their users
// log in again); the sweep removes them when they expire.
type SharedSessions struct {
	// ReadWindow bounds how long Get keeps trying a session read that
	// failed for a transient reason (the store failing over: no primary, a
	// lapsed lease, a node out of reach), counted from the first try and
	// within the caller's deadline. A primary takes 2-3 s to be replaced, so
	// the default, 3s, carries a user through one; a longer window holds
	// requests (and the clients behind them) longer before they get a 503.
	// Zero means the default. Set it before the first call.
	ReadWindow time.Duration

	st    store.Store
	group string // the store group st writes in
	tier  *cachetier.Tier
	now   func() time.Time

	mu        sync.Mutex
	nextSweep time.Time
}

// NewSharedSessions returns sessions in st, cached through tier (nil: the
// store only, every request reads it). A store client of a group other than
// the default one (the users service's, stage 10) is recognized by its
// Group method: its writes' LSNs in that group are what the tier's
// tombstones carry, so give it a tier of the same group.
func NewSharedSessions(st store.Store, tier *cachetier.Tier) *SharedSessions {
	ss := &SharedSessions{st: st, tier: tier, now: time.Now}
	if g, ok := st.(interface{ Group() string }); ok {
		ss.group = g.Group()
	}
	return ss
}

// storedID is what the store and the cache key a session by: the SHA-256
// of its id, in hex.
func storedID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// sessionKey is the cache key of a session, by its storedID.
func sessionKey(stored string) string { return "sess:" + stored }

// sessionRecord is a session as the store and the cache hold it: without
// its id, which only the user's cookie carries.
type sessionRecord struct {
	UserID string
	Handle string
	// LastLSN keeps its name of the single-LSN days: a record of a session
	// that wrote only in the default group is unchanged (a number), and such
	// an older record reads as the default group's LSN (store.LSNs).
	LastLSN store.LSNs
	Expires time.Time
}

func recordOf(s Session) sessionRecord {
	return sessionRecord{UserID: s.UserID, Handle: s.Handle, LastLSN: s.LastLSNs, Expires: s.Expires}
}

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

// DefaultSessionReadWindow is SharedSessions.ReadWindow's default.
const DefaultSessionReadWindow = 3 * time.Second

// The waits between tries of a session read: the first, doubled after each
// try up to the last. Short at first, since a lapsed lease or a dead
// primary is often settled within a few hundred milliseconds.
const (
	sessionRetryFirst = 100 * time.Millisecond
	sessionRetryMax   = time.Second
)

// Get implements Sessions: the cache first, the store on a miss. Only a
// session that does not exist or has expired is ErrNoSession. A read that
// fails while the store fails over (transient says which failures do) is
// tried again, with backoff, for up to ReadWindow; from the second try on a
// replica may answer, so a user is served while the store has no primary.
// If no try succeeds, the last error is returned: the caller answers 503,
// and the user is still logged in when the store is back.
func (ss *SharedSessions) Get(ctx context.Context, id string) (Session, error) {
	if !validSessionID(id) {
		return Session{}, ErrNoSession
	}
	window := ss.ReadWindow
	if window <= 0 {
		window = DefaultSessionReadWindow
	}
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	stored := storedID(id)
	raw, err := ss.read(ctx, stored, false)
	for wait := sessionRetryFirst; transient(err) && sleep(ctx, wait); wait = min(2*wait, sessionRetryMax) {
		raw, err = ss.read(ctx, stored, true)
	}
	if err != nil {
		return Session{}, err
	}
	var rec sessionRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		// A record that cannot be decoded never will be: no session, so
		// that logging in again replaces it rather than failing forever.
		return Session{}, fmt.Errorf("sessions: decode %s: %v: %w", stored, err, ErrNoSession)
	}
	if rec.UserID == "" || !ss.now().Before(rec.Expires) {
		return Session{}, ErrNoSession
	}
	return Session{ID: id, UserID: rec.UserID, Handle: rec.Handle, LastLSNs: rec.LastLSN, Expires: rec.Expires}, nil
}

// read reads the session stored as stored (see storedID) once, through the
// cache tier when there is one. With replica set, the store read may be answered by a replica: any that
// has applied what the cache tier asks for (a write's tombstone), else any
// at all. A replica may not have a login made a moment ago, so "not found"
// from a replica is not the end of the session: it is ErrBehind, which Get
// tries again.
func (ss *SharedSessions) read(ctx context.Context, stored string, replica bool) ([]byte, error) {
	load := func(ctx context.Context) ([]byte, error) {
		if replica {
			if c, atLeast := store.ConsistencyLSNs(ctx); c == store.Strong {
				ctx = store.WithConsistencyLSNs(ctx, store.Session, atLeast)
			}
		}
		raw, err := ss.st.Get(ctx, bucketSessions, stored)
		switch {
		case errors.Is(err, store.ErrNotFound) && replica:
			return nil, fmt.Errorf("sessions: get from a replica: not there (yet): %w", store.ErrBehind)
		case errors.Is(err, store.ErrNotFound):
			return nil, ErrNoSession
		case err != nil:
			return nil, fmt.Errorf("sessions: get: %w", err)
		}
		return raw, nil
	}
	if ss.tier == nil {
		return load(ctx)
	}
	// Session lookups are not part of what the page's X-App-Cache says.
	raw, _, err := ss.tier.Fetch(cachetier.WithTrace(ctx, nil), sessionKey(stored), load)
	return raw, err
}

// sleep waits for d, and reports false at once if ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// transient reports whether a failed store call may succeed if made again
// shortly: the store is failing over (no primary yet, a lease that lapsed,
// a replica behind) or a node is out of reach, rather than the call being
// wrong. A deadline of the call's own (the store client's timeout, the
// cache tier's load timeout) is transient too; the caller's deadline ends
// the retries by itself.
func transient(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotPrimary) ||
		errors.Is(err, store.ErrStaleEpoch) || errors.Is(err, store.ErrBehind) ||
		errors.Is(err, context.DeadlineExceeded)
}

func expiryKey(t time.Time, stored string) string {
	return kv.Join(fmt.Sprintf("%012d", max(t.Unix(), 0)), stored)
}

// Put implements Sessions: the store first (the durable copy), then the
// cache. A new session is put in the cache at once (no copy of it can exist
// anywhere yet); a changed one is invalidated everywhere, like any other
// write, and read back by the next request.
func (ss *SharedSessions) Put(ctx context.Context, s Session) error {
	if !validSessionID(s.ID) {
		return fmt.Errorf("sessions: put: the id is not one NewSessionID makes")
	}
	raw, err := json.Marshal(recordOf(s))
	if err != nil {
		return fmt.Errorf("sessions: encode: %w", err)
	}
	stored := storedID(s.ID)
	write := []store.Op{
		store.Put(bucketSessions, stored, raw),
		store.Put(bucketSessionExpires, expiryKey(s.Expires, stored), nil),
	}
	wctx, lsn := writeTrace(ctx, ss.group)
	_, err = ss.st.Txn(wctx, append([]store.Op{store.IfAbsent(bucketSessions, stored)}, write...)...)
	if err == nil {
		lsn()
		if ss.tier != nil {
			ss.tier.Prime(ctx, sessionKey(stored), raw)
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
		ss.tier.Invalidate(ctx, at, sessionKey(stored))
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
	stored := storedID(id)
	wctx, lsn := writeTrace(ctx, ss.group)
	// The expiry index entry is left for the sweep, which drops entries
	// whose session is gone.
	_, err := ss.st.Txn(wctx, store.Delete(bucketSessions, stored))
	if ss.tier != nil {
		ss.tier.Invalidate(ctx, lsn(), sessionKey(stored))
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
		// What follows the expiry is the session's key: its storedID, or
		// for a session made before ids were hashed, its id.
		_, stored, ok := strings.Cut(p.Key, "/")
		if !ok || stored == "" {
			continue
		}
		raw, err := ss.st.Get(ctx, bucketSessions, stored)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sessions: sweep: %w", err)
		}
		var rec sessionRecord
		// A session whose expiry moved later is kept; its new index entry
		// stays.
		if json.Unmarshal(raw, &rec) == nil && now.Before(rec.Expires) {
			continue
		}
		ops = append(ops, store.IfEqual(bucketSessions, stored, raw), store.Delete(bucketSessions, stored))
	}
	if _, err := ss.st.Txn(ctx, ops...); err != nil && !errors.Is(err, store.ErrConditionFailed) {
		return fmt.Errorf("sessions: sweep: %w", err)
	}
	return nil
}
