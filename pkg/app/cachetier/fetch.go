package cachetier

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/pkg/store"
)

// Loader reads a value from the source of truth. ctx carries the store
// consistency the load must use (see Fetch) and is not canceled when the
// reader that started the load goes away, since other readers may share it.
// A nil value with a nil error means "nothing to cache": the caller gets nil
// and nothing is filled.
type Loader func(ctx context.Context) ([]byte, error)

// What a cache entry holds: a value, or a tombstone left by a write. The
// first byte says which; the rest is sealed (seal.go).
const (
	kindData = 'D'
	kindTomb = 'T'
)

// States of a decoded entry besides kindData and kindTomb.
const (
	// stateExpired: a value that verifies but whose time is past: a replay
	// of an old entry, or a writer whose clock is ahead. Served from the
	// store, not counted as forged.
	stateExpired = 'E'
	// stateForged: a value that does not verify (forged, damaged, or
	// written by another client). Served from the store and counted.
	stateForged = 'F'
)

// entry is a decoded cache entry.
type entry struct {
	state   byte // 0 (absent), kindData, kindTomb, stateExpired or stateForged
	payload []byte
	lsn     uint64
}

// decodeEntry opens what a cache node holds under key (without the prefix).
func (t *Tier) decodeEntry(key string, v any) entry {
	s, ok := v.(string)
	if !ok {
		return entry{}
	}
	if s != "" {
		switch s[0] {
		case kindData:
			payload, expired, ok := t.seal.openData(t.cfg.Prefix+key, s, time.Now())
			switch {
			case ok && expired:
				return entry{state: stateExpired}
			case ok:
				return entry{state: kindData, payload: payload}
			}
		case kindTomb:
			if group, lsn, ok := t.seal.openTombstone(s); ok {
				if group != t.group {
					// A write in another store group: its LSN counts
					// another log and means nothing here. Still a
					// tombstone: not filled, read at the watermark.
					lsn = 0
				}
				return entry{state: kindTomb, lsn: lsn}
			}
		}
	}
	return entry{state: stateForged}
}

// Fetch returns the value of key: from the cache on a hit, otherwise from
// load, after which the value is put in the cache if that is safe. Errors
// are load's; a cache that fails only makes Fetch go to load (a BYPASS).
//
// The load runs once per key at a time in this process, shared by every
// reader that asks meanwhile, with a context whose store consistency is at
// least Session at the highest LSN of a write that invalidated the key or,
// for an empty key, the node's watermark: so a lagging replica cannot
// answer with a value older than an acknowledged write. The returned bytes
// may be shared between readers and must not be modified.
func (t *Tier) Fetch(ctx context.Context, key string, load Loader) ([]byte, Result, error) {
	n := t.view.Load().owner(t.cfg.Prefix + key)
	if n == nil {
		v, err := t.bypass(ctx, key, load)
		return v, Bypass, err
	}
	start := time.Now()
	var vals []any
	err := n.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = n.rdb.MGet(ctx, t.cfg.Prefix+key, t.wmKey).Result()
		return err
	})
	if err != nil || len(vals) != 2 {
		t.failed(ctx, n, "get", err)
		v, err := t.bypass(ctx, key, load)
		return v, Bypass, err
	}
	n.ok()
	return t.resolve(ctx, n, key, t.decodeEntry(key, vals[0]), vals[1], start, load)
}

// resolve serves one key given what the cache held for it.
func (t *Tier) resolve(ctx context.Context, n *node, key string, e entry, wmVal any, start time.Time, load Loader) ([]byte, Result, error) {
	if s, ok := wmVal.(string); ok {
		if group, lsn, ok := t.seal.openWatermark(s); ok && group == t.group {
			t.raiseWM(lsn)
		} else {
			t.forged(n, t.wmKey)
		}
	}
	wm := t.wm.Load()
	switch e.state {
	case kindData:
		t.record(ctx, key, Hit)
		return e.payload, Hit, nil
	case kindTomb:
		// Written recently: read at least that write, and leave the key to
		// the tombstone (NX could not fill it anyway).
		t.record(ctx, key, Miss)
		v, err := t.load(ctx, "t", key, max(e.lsn, wm), load, nil, time.Time{})
		return v, Miss, err
	case 0:
		t.record(ctx, key, Miss)
		v, err := t.load(ctx, "a", key, wm, load, n, start)
		return v, Miss, err
	case stateExpired:
		// A replay, or a writer's clock ahead of ours: not worth a fill
		// (SET NX could not replace it anyway); it expires in the cache.
		t.record(ctx, key, Miss)
		v, err := t.load(ctx, "?", key, wm, load, nil, time.Time{})
		return v, Miss, err
	}
	// Not an entry the tier wrote (forged, damaged, another client's):
	// serve from the store and leave the key alone. Overwriting it would
	// race with a write's tombstone.
	t.forged(n, key)
	t.record(ctx, key, Miss)
	v, err := t.load(ctx, "?", key, wm, load, nil, time.Time{})
	return v, Miss, err
}

// bypass loads without the cache (no node, or its node failed).
func (t *Tier) bypass(ctx context.Context, key string, load Loader) ([]byte, error) {
	t.record(ctx, key, Bypass)
	return t.load(ctx, "b", key, t.wm.Load(), load, nil, time.Time{})
}

// load runs load once for every reader that saw the same state of key, and
// fills the key on fill (if not nil) if the load ended within fillWindow of
// start, when the reader looked at the key. Readers who saw different
// states do not share a load: one who saw a write's tombstone must not get
// the result of a load that started before the write.
func (t *Tier) load(ctx context.Context, state, key string, minLSN uint64, load Loader, fill *node, start time.Time) ([]byte, error) {
	group := key + "\x00" + state + strconv.FormatUint(minLSN, 10)
	ch := t.sf.DoChan(group, func() (any, error) {
		// The load is a goroutine of the tier's, which Close waits for;
		// once Close has begun it is no longer counted or canceled.
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return load(loadContext(context.WithoutCancel(ctx), t.group, minLSN))
		}
		t.wg.Add(1)
		t.mu.Unlock()
		defer t.wg.Done()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.LoadTimeout)
		defer cancel()
		stop := context.AfterFunc(t.ctx, cancel)
		defer stop()
		t.met.loads.Add(1)
		v, err := load(loadContext(lctx, t.group, minLSN))
		if err != nil || v == nil || fill == nil {
			return v, err
		}
		if time.Since(start) >= t.fillWindow {
			// The load took long enough that a write made after it started
			// may have had its tombstone expire already: do not fill.
			return v, nil
		}
		t.fill(lctx, fill, key, v)
		return v, nil
	})
	select {
	case r := <-ch:
		v, _ := r.Val.([]byte)
		return v, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill puts v under key if the key is empty, and reports whether it did.
// SET NX never overwrites a tombstone, nor a value another reader filled
// first.
func (t *Tier) fill(ctx context.Context, n *node, key string, v []byte) bool {
	buf := t.seal.data(t.cfg.Prefix+key, v, time.Now().Add(t.cfg.TTL))
	var set bool
	err := n.call(ctx, func(ctx context.Context) error {
		var err error
		set, err = n.rdb.SetNX(ctx, t.cfg.Prefix+key, buf, t.cfg.TTL).Result()
		return err
	})
	if err != nil {
		t.failed(ctx, n, "fill", err)
		return false
	}
	n.ok()
	if set {
		t.met.fills.Add(1)
	}
	return set
}

// loadContext asks the store for a read that has seen minLSN of group at
// least. Session consistency at the watermark is all a cached value needs
// (see docs/cache-tier.md), so a Strong request is relaxed to it when a
// watermark is known: cache loads can then be served by replicas. The LSNs
// the caller asked of other groups are kept as they were.
func loadContext(ctx context.Context, group string, minLSN uint64) context.Context {
	if minLSN == 0 {
		return ctx
	}
	c, lsns := store.ConsistencyLSNs(ctx)
	if c == store.Session && lsns.Get(group) >= minLSN {
		return ctx
	}
	if c != store.Session {
		lsns = nil
	}
	return store.WithConsistencyLSNs(ctx, store.Session, lsns.With(group, minLSN))
}

// FetchMany is Fetch for several keys at once: one round trip per cache node
// holding any of them (in parallel), then a load for each key that missed,
// in order. vals[i] is the value of keys[i]; load(ctx, i) loads keys[i].
func (t *Tier) FetchMany(ctx context.Context, keys []string, load func(ctx context.Context, i int) ([]byte, error)) ([][]byte, error) {
	vals := make([][]byte, len(keys))
	if len(keys) == 0 {
		return vals, nil
	}
	v := t.view.Load()
	// Group the keys by owner; keys with no usable owner are bypassed.
	type batch struct {
		n    *node
		idx  []int
		ents []entry
		wm   any
		err  error
	}
	batches := map[*node]*batch{}
	var order []*batch
	var bypass []int
	for i, k := range keys {
		n := v.owner(t.cfg.Prefix + k)
		if n == nil {
			bypass = append(bypass, i)
			continue
		}
		b := batches[n]
		if b == nil {
			b = &batch{n: n}
			batches[n] = b
			order = append(order, b)
		}
		b.idx = append(b.idx, i)
	}
	start := time.Now()
	get := func(b *batch) {
		names := make([]string, 0, len(b.idx)+1)
		for _, i := range b.idx {
			names = append(names, t.cfg.Prefix+keys[i])
		}
		names = append(names, t.wmKey)
		var res []any
		b.err = b.n.call(ctx, func(ctx context.Context) error {
			var err error
			res, err = b.n.rdb.MGet(ctx, names...).Result()
			return err
		})
		if b.err == nil && len(res) != len(names) {
			b.err = errors.New("cachetier: short MGET reply")
		}
		if b.err != nil {
			return
		}
		b.ents = make([]entry, len(b.idx))
		for j := range b.idx {
			b.ents[j] = t.decodeEntry(keys[b.idx[j]], res[j])
		}
		b.wm = res[len(res)-1]
	}
	if len(order) == 1 {
		get(order[0])
	} else {
		var wg sync.WaitGroup
		for _, b := range order {
			wg.Go(func() { get(b) })
		}
		wg.Wait()
	}
	for _, b := range order {
		if b.err != nil {
			t.failed(ctx, b.n, "mget", b.err)
			bypass = append(bypass, b.idx...)
			continue
		}
		b.n.ok()
		for j, i := range b.idx {
			val, _, err := t.resolve(ctx, b.n, keys[i], b.ents[j], b.wm, start, func(ctx context.Context) ([]byte, error) { return load(ctx, i) })
			if err != nil {
				return nil, err
			}
			vals[i] = val
		}
	}
	for _, i := range bypass {
		val, err := t.bypass(ctx, keys[i], func(ctx context.Context) ([]byte, error) { return load(ctx, i) })
		if err != nil {
			return nil, err
		}
		vals[i] = val
	}
	return vals, nil
}

// Prime puts v, which the caller has just written to the store, under key
// if the key is empty, and reports whether it did. Use it only for a key
// created by that write (a new session's random id): no copy of it can be
// on any node, and a reader that fills after Prime cannot (SET NX). For
// any other write, Invalidate. With no usable node it reports false.
func (t *Tier) Prime(ctx context.Context, key string, v []byte) bool {
	n := t.view.Load().owner(t.cfg.Prefix + key)
	if n == nil {
		return false
	}
	return t.fill(context.WithoutCancel(ctx), n, key, v)
}

// Invalidate marks keys as changed by a write that committed at lsn (zero
// if unknown). Call it after the write, and before acknowledging the write
// to the client. It goes to every cache node in the set, not only to the
// owners, so that a key that moves between nodes when the ring changes
// finds no old value where it lands; a node that is down or does not answer
// gets the keys when it comes back. It never fails: the write has happened.
func (t *Tier) Invalidate(ctx context.Context, lsn uint64, keys ...string) {
	if len(keys) == 0 {
		return
	}
	// The client going away must not stop an invalidation half way.
	ctx = context.WithoutCancel(ctx)
	t.raiseWM(lsn)
	t.met.invalidations.Add(uint64(len(keys)))
	now := time.Now()
	t.mu.Lock()
	for _, p := range t.gone {
		p.add(keys, now, t.cfg.MaxPending)
	}
	t.mu.Unlock()
	v := t.view.Load()
	if v == nil {
		return
	}
	tomb := t.seal.tombstone(t.group, max(lsn, t.wm.Load()))
	send := func(n *node) {
		if n.missed(keys, now) {
			return
		}
		err := n.call(ctx, func(ctx context.Context) error {
			pipe := n.rdb.Pipeline()
			for _, k := range keys {
				pipe.Set(ctx, t.cfg.Prefix+k, tomb, t.cfg.TombstoneTTL)
			}
			_, err := pipe.Exec(ctx)
			return err
		})
		if err == nil && lsn > 0 {
			err = n.raiseWM(ctx, lsn)
		}
		if err != nil {
			t.failed(ctx, n, "invalidate", err)
			if n.down(keys, now) {
				t.log.Warn("cache node missed an invalidation; out of the ring until it has it", "cache", n.addr, "err", err)
				t.rebuild()
			}
			return
		}
		n.ok()
	}
	if len(v.all) == 1 {
		send(v.all[0])
		return
	}
	var wg sync.WaitGroup
	for _, n := range v.all {
		wg.Go(func() { send(n) })
	}
	wg.Wait()
}

// failed counts and logs a failed call to n, and takes n out of the ring
// when its breaker opens. A call that failed because the caller went away
// says nothing about the node.
func (t *Tier) failed(ctx context.Context, n *node, op string, err error) {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	if errors.Is(err, redis.Nil) {
		return
	}
	t.met.errors.Add(1)
	t.log.Debug("cache call failed", "op", op, "cache", n.addr, "err", err)
	if n.fail() {
		t.log.Warn("cache node not answering; taking it out of the ring", "cache", n.addr, "err", err,
			"retry_in", t.cfg.Cooldown)
		t.rebuild()
	}
}
