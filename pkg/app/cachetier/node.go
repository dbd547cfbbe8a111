package cachetier

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// node is one cache node: its go-redis client, reused for as long as the
// node stays in the set, and its circuit breaker.
//
// The breaker is closed (up) while calls succeed. FailureThreshold failures
// in a row open it: the node leaves the ring, so requests stop paying a
// timeout for it, and invalidations meant for it are kept in pending. After
// Cooldown the refresh loop probes it; if it answers, the pending
// invalidations are replayed (or, if there were too many, the node is
// flushed) and only then does it rejoin the ring, so it never serves a value
// a write invalidated while it was away.
type node struct {
	t    *Tier
	addr string
	rdb  *redis.Client

	failures atomic.Int32
	up       atomic.Bool

	mu      sync.Mutex
	retryAt time.Time
	pend    *pending
}

func newNode(t *Tier, addr string, missed *pending) *node {
	n := &node{t: t, addr: addr, rdb: redis.NewClient(&redis.Options{
		Addr:     addr,
		Password: t.cfg.Password,
		// crypto/tls names the server it expects after the address
		// dialled, so one configuration serves every cache node.
		TLSConfig: cloneTLS(t.cfg.TLS),
		// RESP2 without HELLO or CLIENT SETINFO: one round trip less per
		// connection, and the cache role speaks RESP2 only.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              t.cfg.Timeout,
		// One dial per attempt: a refused connection fails at once, and the
		// breaker, not the pool, decides when to try again.
		DialerRetries:         1,
		ReadTimeout:           t.cfg.Timeout,
		WriteTimeout:          t.cfg.Timeout,
		PoolTimeout:           t.cfg.Timeout,
		ContextTimeoutEnabled: true,
		PoolSize:              t.cfg.PoolSize,
		// A retry against a node that timed out doubles the wait of the
		// request for nothing; the breaker handles nodes that fail.
		MaxRetries: -1,
	})}
	n.pend = missed
	if missed == nil {
		n.pend = newPending()
	}
	// A node that missed invalidations while it was out of the set starts
	// down, and is probed (and replayed to) at once.
	n.up.Store(n.pend.empty())
	return n
}

func (n *node) isUp() bool { return n.up.Load() }

func (n *node) close() error { return n.rdb.Close() }

// leave returns what the node missed, for a later return to the set.
func (n *node) leave() *pending {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pend
}

// ok notes a successful call.
func (n *node) ok() {
	if n.failures.Load() != 0 {
		n.failures.Store(0)
	}
}

// fail notes a failed call and reports whether it opened the breaker.
func (n *node) fail() bool {
	if n.failures.Add(1) < int32(n.t.cfg.FailureThreshold) {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.up.Load() {
		return false
	}
	n.up.Store(false)
	n.retryAt = time.Now().Add(n.t.cfg.Cooldown)
	return true
}

func (n *node) dueForProbe(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !now.Before(n.retryAt)
}

// missed records keys whose invalidation did not reach the node, if it is
// down; it reports false (nothing recorded) if the node is up, in which case
// the caller sends the invalidation. The check and the record are one step
// under mu, so recover cannot close the breaker between them.
func (n *node) missed(keys []string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up.Load() {
		return false
	}
	n.pend.add(keys, now, n.t.cfg.MaxPending)
	return true
}

// down records keys whose invalidation failed on an up node and opens the
// breaker at once, whatever the count of failures: the node may still hold
// the old values, so it must not serve until it has the invalidation. It
// reports whether it opened the breaker.
func (n *node) down(keys []string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pend.add(keys, now, n.t.cfg.MaxPending)
	if !n.up.Load() {
		return false
	}
	n.up.Store(false)
	n.retryAt = now.Add(n.t.cfg.Cooldown)
	return true
}

// recover probes a down node and, if it answers, replays what it missed
// and closes the breaker. It reports whether the node is up again.
func (n *node) recover(ctx context.Context) bool {
	if err := n.call(ctx, func(ctx context.Context) error { return n.rdb.Ping(ctx).Err() }); err != nil {
		n.retryLater()
		return false
	}
	for {
		n.mu.Lock()
		keys, flush := n.pend.take()
		if len(keys) == 0 && !flush {
			n.failures.Store(0)
			n.up.Store(true)
			n.mu.Unlock()
			return true
		}
		n.mu.Unlock()
		if err := n.replay(ctx, keys, flush); err != nil {
			n.t.met.errors.Add(1)
			n.t.log.Debug("cache: replay missed invalidations", "cache", n.addr, "keys", len(keys), "err", err)
			n.mu.Lock()
			n.pend.restore(keys, flush, n.t.cfg.MaxPending)
			n.mu.Unlock()
			n.retryLater()
			return false
		}
		if flush {
			n.t.log.Warn("cache node missed too many invalidations while away; flushed it", "cache", n.addr)
		}
	}
}

func (n *node) retryLater() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.retryAt = time.Now().Add(n.t.cfg.Cooldown)
}

// replay marks keys as invalidated at the tier's watermark, which is at
// least the LSN of every write that missed the node; or flushes the node.
func (n *node) replay(ctx context.Context, keys []string, flush bool) error {
	if flush {
		return n.call(ctx, func(ctx context.Context) error { return n.rdb.FlushAll(ctx).Err() })
	}
	wm := n.t.wm.Load()
	tomb := n.t.seal.tombstone(n.t.group, wm)
	const chunk = 500
	for len(keys) > 0 {
		part := keys[:min(chunk, len(keys))]
		keys = keys[len(part):]
		err := n.call(ctx, func(ctx context.Context) error {
			pipe := n.rdb.Pipeline()
			for _, k := range part {
				pipe.Set(ctx, n.t.cfg.Prefix+k, tomb, n.t.cfg.TombstoneTTL)
			}
			_, err := pipe.Exec(ctx)
			return err
		})
		if err != nil {
			return err
		}
	}
	if wm > 0 {
		return n.raiseWM(ctx, wm)
	}
	return nil
}

// call runs f with the per-call timeout.
func (n *node) call(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, n.t.cfg.Timeout)
	defer cancel()
	return f(ctx)
}

// raiseWM makes the node's watermark at least lsn. The cache has no atomic
// max, so this is SET ... GET in a loop: whoever finds a higher value than
// it wrote puts that value back. Two writers racing leave the higher value
// within a round trip or two; the lower value in between is covered by the
// higher write's tombstones (docs/cache-tier.md). A value found there that
// does not verify is counted and not put back.
func (n *node) raiseWM(ctx context.Context, lsn uint64) error {
	for try := 0; try < 4; try++ {
		var old uint64
		err := n.call(ctx, func(ctx context.Context) error {
			v, err := n.rdb.Do(ctx, "SET", n.t.wmKey, n.t.seal.watermark(n.t.group, lsn), "GET").Text()
			if errors.Is(err, redis.Nil) {
				return nil
			}
			if err != nil {
				return err
			}
			group, lsn, ok := n.t.seal.openWatermark(v)
			if !ok || group != n.t.group {
				n.t.forged(n, n.t.wmKey)
			} else {
				old = lsn
			}
			return nil
		})
		if err != nil {
			return err
		}
		n.t.raiseWM(old)
		if old <= lsn {
			return nil
		}
		lsn = old
	}
	return nil
}

func (n *node) prune(cutoff time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pend.prune(cutoff)
}

func (n *node) stats() NodeStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return NodeStats{Addr: n.addr, Up: n.up.Load(), Pending: n.pend.len()}
}

// pending is the set of keys whose invalidation a node missed, each with
// the time it was missed. Not safe for concurrent use.
type pending struct {
	keys map[string]time.Time
	// overflowAt, when not zero, is when the set overflowed: the node must
	// be flushed, unless that was so long ago that everything has expired.
	overflowAt time.Time
}

func newPending() *pending { return &pending{keys: map[string]time.Time{}} }

func (p *pending) empty() bool { return len(p.keys) == 0 && p.overflowAt.IsZero() }

func (p *pending) len() int { return len(p.keys) }

func (p *pending) add(keys []string, now time.Time, max int) {
	if !p.overflowAt.IsZero() {
		p.overflowAt = now
		return
	}
	for _, k := range keys {
		p.keys[k] = now
	}
	if len(p.keys) > max {
		p.keys = map[string]time.Time{}
		p.overflowAt = now
	}
}

// take empties the set and returns its keys, or flush if it overflowed.
func (p *pending) take() (keys []string, flush bool) {
	if !p.overflowAt.IsZero() {
		p.keys, p.overflowAt = map[string]time.Time{}, time.Time{}
		return nil, true
	}
	for k := range p.keys {
		keys = append(keys, k)
	}
	p.keys = map[string]time.Time{}
	return keys, false
}

// restore puts back what take returned, after a failed replay.
func (p *pending) restore(keys []string, flush bool, max int) {
	now := time.Now()
	if flush {
		p.overflowAt = now
		return
	}
	p.add(keys, now, max)
}

// prune forgets keys missed before cutoff and reports whether the set is
// now empty.
func (p *pending) prune(cutoff time.Time) bool {
	for k, at := range p.keys {
		if at.Before(cutoff) {
			delete(p.keys, k)
		}
	}
	if !p.overflowAt.IsZero() && p.overflowAt.Before(cutoff) {
		p.overflowAt = time.Time{}
	}
	return p.empty()
}

func cloneTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	return c.Clone()
}
