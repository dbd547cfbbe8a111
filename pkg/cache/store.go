package cache

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/scalestack/scalestack/pkg/cache/lru"
)

// store spreads keys over shards, each an LRU under its own mutex, so that
// connections served on different cores rarely wait for one another. The
// byte budget is split evenly: a shard evicts when its share is full.
type store struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu  sync.Mutex
	lru *lru.Cache[string, []byte]
	// Keep neighbouring shards' mutexes off one cache line, so two cores
	// locking different shards do not contend for the line.
	_ [48]byte
}

// entrySize is what a key and value occupy: the key's bytes and the value's
// whole backing array (its cap, which is what was allocated).
func entrySize(k string, v []byte) int64 { return int64(len(k) + cap(v)) }

func newStore(maxBytes int64, shards int) *store {
	n := roundPow2(shards)
	s := &store{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	per := maxBytes / int64(n)
	for i := range s.shards {
		s.shards[i].lru = lru.New[string, []byte](per, entrySize)
	}
	return s
}

func (s *store) shard(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)&s.mask]
}

// set stores value under key in sh, whose mutex the caller holds. An
// existing key is updated through a view of the caller's bytes; only a new
// key is copied into a string of its own, so overwriting a key allocates
// nothing for the key.
func (s *store) set(sh *shard, key, value []byte, deadline, now int64) bool {
	if stored, existed := sh.lru.Update(view(key), value, deadline, now); existed {
		return stored
	}
	return sh.lru.Set(string(key), value, deadline, now)
}

// view returns b as a string without copying, for map lookups only: the
// string must not outlive b's contents, so it is never stored.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// totals sums the shards' figures.
type totals struct {
	keys, expiring int
	bytes          int64
	stats          lru.Stats
}

func (s *store) totals() totals {
	var t totals
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		t.keys += sh.lru.Len()
		t.expiring += sh.lru.Expiring()
		t.bytes += sh.lru.Bytes()
		st := sh.lru.Stats()
		sh.mu.Unlock()
		t.stats.Hits += st.Hits
		t.stats.Misses += st.Misses
		t.stats.Evictions += st.Evictions
		t.stats.Expired += st.Expired
	}
	return t
}

func (s *store) flush() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.lru.Clear()
		sh.mu.Unlock()
	}
}

// Redis's active expire cycle: sample 20 keys that have a deadline, and go
// on while more than a tenth of a sample was expired, within a time budget.
const (
	expireSample     = 20
	expireAcceptable = expireSample / 10
)

// expireCycle runs the cycle over every shard, spending at most budget in
// total, and returns how many keys it removed. It holds one shard's lock at
// a time, for one sample at a time, so clients wait at most one sample.
func (s *store) expireCycle(budget time.Duration) int {
	start := time.Now()
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		for {
			sh.mu.Lock()
			_, expired := sh.lru.ExpireSample(expireSample, time.Now().UnixNano())
			sh.mu.Unlock()
			removed += expired
			if expired <= expireAcceptable {
				break
			}
			if time.Since(start) > budget {
				return removed
			}
		}
	}
	return removed
}
