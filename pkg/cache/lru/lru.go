// Package lru is a least-recently-used cache bounded in bytes, with an
// optional deadline per entry. It is the data structure under the cache role
// (pkg/cache) and the edge's object store (pkg/cdn).
//
// A Cache is a hash map from key to a slot in a slice of nodes, and the nodes
// form a doubly-linked list in recency order, linked by slot index rather
// than by pointer: one allocation holds every node, freed slots are reused,
// and the garbage collector scans one slice instead of a million small
// objects.
//
// Every entry costs the bytes its size function reports (key and value) plus
// a fixed per-entry overhead for the node, its map slot and its place in the
// expiry index (see [Cache.Overhead]). Adding an entry evicts from the
// least-recently-used end until the total fits the budget.
//
// Time is passed in by the caller as Unix nanoseconds ("now"), so the cache
// does no I/O, reads no clock and is deterministic in tests. An expired entry
// is never returned: lookups remove it when they meet it (lazy expiry), and
// [Cache.ExpireSample] removes expired entries nobody asks for, by sampling
// entries that carry a deadline, as Redis's active expire cycle does.
//
// A Cache is not safe for concurrent use; the caller holds a lock around it
// (pkg/cache shards keys over many Caches, each under its own mutex).
package lru

import (
	"math"
	"unsafe"
)

// KeepDeadline, given to [Cache.Set] as the deadline, keeps the deadline the
// key already has (none for a new key), as Redis's SET KEEPTTL does.
const KeepDeadline int64 = -1

// Reason says why an entry left the cache, for [Cache.OnEvict].
type Reason int

const (
	// Evicted: removed to make room under the byte budget.
	Evicted Reason = iota + 1
	// Expired: its deadline passed.
	Expired
)

func (r Reason) String() string {
	switch r {
	case Evicted:
		return "evicted"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Stats counts what happened to a Cache since it was made.
type Stats struct {
	Hits      uint64 // Get found a live entry
	Misses    uint64 // Get found nothing, or an expired entry
	Evictions uint64 // entries removed to fit the byte budget
	Expired   uint64 // entries removed because their deadline passed
}

// Cache is a byte-bounded LRU cache with per-entry deadlines. The zero value
// is not usable; call [New].
type Cache[K comparable, V any] struct {
	// OnEvict, if not nil, is called for every entry the cache removes on its
	// own: to fit the budget (Evicted) or because it expired (Expired). It is
	// not called for Delete, Clear or an overwrite by Set, which the caller
	// asked for. It must not call back into the Cache.
	OnEvict func(key K, value V, why Reason)

	maxBytes int64
	bytes    int64
	size     func(K, V) int64
	overhead int64

	index map[K]int32
	// nodes[0] is the sentinel of the circular recency list: nodes[0].next
	// is the most recently used entry, nodes[0].prev the least.
	nodes []node[K, V]
	free  int32 // first free slot, chained through next; 0 when none
	// expiring holds the slots of entries that have a deadline, so that
	// ExpireSample can pick them at random in O(1).
	expiring []int32
	rng      uint64
	stats    Stats
}

type node[K comparable, V any] struct {
	key      K
	value    V
	deadline int64 // Unix nanoseconds; 0 means none
	cost     int64 // size(key, value) + overhead
	prev     int32
	next     int32
	expPos   int32 // position in expiring, or -1
}

// New returns an empty cache that holds at most maxBytes, counting for each
// entry size(key, value) plus [Cache.Overhead]. size should report what the
// key and value really occupy: for a []byte that is its cap, not its len.
// A nil size counts every entry as its overhead alone.
func New[K comparable, V any](maxBytes int64, size func(K, V) int64) *Cache[K, V] {
	if maxBytes < 0 {
		maxBytes = 0
	}
	c := &Cache[K, V]{
		maxBytes: maxBytes,
		size:     size,
		overhead: entryOverhead[K, V](),
		rng:      0x9e3779b97f4a7c15,
	}
	c.reset()
	return c
}

// entryOverhead estimates the bytes an entry costs beyond its key's and
// value's own data: the node (which holds the key's and value's headers),
// the map slot (key header and slot index, one control byte, and the 1/8 of
// empty slots Go's map keeps at its maximum load), and one expiry-index slot.
func entryOverhead[K comparable, V any]() int64 {
	var n node[K, V]
	var k K
	slot := int64(unsafe.Sizeof(k)) + 4 + 1
	return int64(unsafe.Sizeof(n)) + slot*8/7 + 4
}

func (c *Cache[K, V]) reset() {
	c.index = make(map[K]int32)
	c.nodes = make([]node[K, V], 1, 16)
	c.nodes[0].prev, c.nodes[0].next = 0, 0
	c.free = 0
	c.expiring = nil
	c.bytes = 0
}

// Overhead is the fixed number of bytes each entry costs on top of what the
// size function reports for its key and value.
func (c *Cache[K, V]) Overhead() int64 { return c.overhead }

// MaxBytes is the byte budget the cache was made with.
func (c *Cache[K, V]) MaxBytes() int64 { return c.maxBytes }

// Bytes is the cost of the entries held now, overhead included. Expired
// entries not yet removed still count.
func (c *Cache[K, V]) Bytes() int64 { return c.bytes }

// Len is the number of entries held, including expired ones not yet removed.
func (c *Cache[K, V]) Len() int { return len(c.index) }

// Expiring is the number of entries held that have a deadline.
func (c *Cache[K, V]) Expiring() int { return len(c.expiring) }

// Stats returns the counters since the cache was made.
func (c *Cache[K, V]) Stats() Stats { return c.stats }

// lookup finds a live entry, removing it first if it has expired.
func (c *Cache[K, V]) lookup(key K, now int64) (int32, bool) {
	i, ok := c.index[key]
	if !ok {
		return 0, false
	}
	if d := c.nodes[i].deadline; d != 0 && d <= now {
		c.remove(i)
		c.stats.Expired++
		if c.OnEvict != nil {
			n := &c.nodes[i]
			c.OnEvict(n.key, n.value, Expired)
		}
		c.release(i)
		return 0, false
	}
	return i, true
}

// Get returns the value for key if it is present and not expired, and marks
// it most recently used. It counts a hit or a miss.
func (c *Cache[K, V]) Get(key K, now int64) (V, bool) {
	i, ok := c.lookup(key, now)
	if !ok {
		c.stats.Misses++
		var zero V
		return zero, false
	}
	c.stats.Hits++
	c.moveToFront(i)
	return c.nodes[i].value, true
}

// Peek returns the value for key like Get, but leaves its recency and the
// hit and miss counters alone. An expired entry it meets is still removed.
func (c *Cache[K, V]) Peek(key K, now int64) (V, bool) {
	i, ok := c.lookup(key, now)
	if !ok {
		var zero V
		return zero, false
	}
	return c.nodes[i].value, true
}

// Deadline returns the key's deadline in Unix nanoseconds (0: none) and
// whether the key is present and live.
func (c *Cache[K, V]) Deadline(key K, now int64) (int64, bool) {
	i, ok := c.lookup(key, now)
	if !ok {
		return 0, false
	}
	return c.nodes[i].deadline, true
}

// SetDeadline changes the deadline of a live key (0 removes it) and reports
// whether the key was present. A deadline at or before now removes the key
// at once, counted as expired, and still reports true.
func (c *Cache[K, V]) SetDeadline(key K, deadline, now int64) bool {
	i, ok := c.lookup(key, now)
	if !ok {
		return false
	}
	if deadline != 0 && deadline <= now {
		c.remove(i)
		c.stats.Expired++
		c.release(i)
		return true
	}
	c.setDeadline(i, deadline)
	return true
}

// Set stores value under key as the most recently used entry, with the given
// deadline (Unix nanoseconds; 0 for none; KeepDeadline to keep the key's
// current one), then evicts least-recently-used entries until the cache fits
// its budget. It reports false, and holds no entry for key afterwards, when
// the entry alone is larger than the whole budget.
func (c *Cache[K, V]) Set(key K, value V, deadline, now int64) bool {
	stored, _ := c.set(key, value, deadline, now, true)
	return stored
}

// Update is Set for a key that is already present: it replaces the value
// of a live key and reports stored as Set does, and existed = true. When
// the key is absent it stores nothing and reports false, false. The key is
// only compared, never kept, so a caller may pass a borrowed one (a view
// of a read buffer) and copy the key only when Update reports it absent.
func (c *Cache[K, V]) Update(key K, value V, deadline, now int64) (stored, existed bool) {
	return c.set(key, value, deadline, now, false)
}

func (c *Cache[K, V]) set(key K, value V, deadline, now int64, insert bool) (stored, existed bool) {
	i, exists := c.lookup(key, now)
	if !exists && !insert {
		return false, false
	}
	cost := c.overhead
	if c.size != nil {
		cost += c.size(key, value)
	}
	if cost > c.maxBytes {
		if exists {
			c.remove(i)
			c.release(i)
		}
		return false, exists
	}
	if exists {
		n := &c.nodes[i]
		c.bytes += cost - n.cost
		n.value = value
		n.cost = cost
		if deadline != KeepDeadline {
			c.setDeadline(i, deadline)
		}
		c.moveToFront(i)
	} else {
		if deadline == KeepDeadline {
			deadline = 0
		}
		i = c.alloc()
		n := &c.nodes[i]
		n.key, n.value, n.cost, n.deadline, n.expPos = key, value, cost, 0, -1
		c.index[key] = i
		c.bytes += cost
		c.setDeadline(i, deadline)
		c.pushFront(i)
	}
	for c.bytes > c.maxBytes {
		c.evictOldest()
	}
	return true, exists
}

// Delete removes key and reports whether it was present and live.
func (c *Cache[K, V]) Delete(key K, now int64) bool {
	i, ok := c.lookup(key, now)
	if !ok {
		return false
	}
	c.remove(i)
	c.release(i)
	return true
}

// Clear removes every entry, keeping the counters.
func (c *Cache[K, V]) Clear() { c.reset() }

// ExpireSample looks at up to n entries that have a deadline, picked at
// random, removes those whose deadline has passed, and returns how many it
// looked at and how many it removed. Callers repeat it while a good share of
// the sample was expired (Redis 6 and later repeat while more than a tenth
// was), so that memory held by keys nobody reads again is reclaimed at a cost
// that follows how many keys are expiring.
func (c *Cache[K, V]) ExpireSample(n int, now int64) (sampled, expired int) {
	for ; sampled < n && len(c.expiring) > 0; sampled++ {
		i := c.expiring[c.rand(len(c.expiring))]
		if c.nodes[i].deadline > now {
			continue
		}
		c.remove(i)
		c.stats.Expired++
		expired++
		if c.OnEvict != nil {
			nd := &c.nodes[i]
			c.OnEvict(nd.key, nd.value, Expired)
		}
		c.release(i)
	}
	return sampled, expired
}

// Oldest returns the least recently used key, without touching it, and
// whether the cache holds any entry.
func (c *Cache[K, V]) Oldest() (K, bool) {
	i := c.nodes[0].prev
	if i == 0 {
		var zero K
		return zero, false
	}
	return c.nodes[i].key, true
}

// Keys returns the keys from most to least recently used, expired ones
// included. It is O(n) and meant for tests and small caches.
func (c *Cache[K, V]) Keys() []K {
	keys := make([]K, 0, len(c.index))
	for i := c.nodes[0].next; i != 0; i = c.nodes[i].next {
		keys = append(keys, c.nodes[i].key)
	}
	return keys
}

func (c *Cache[K, V]) evictOldest() {
	i := c.nodes[0].prev
	if i == 0 {
		return
	}
	c.remove(i)
	c.stats.Evictions++
	if c.OnEvict != nil {
		n := &c.nodes[i]
		c.OnEvict(n.key, n.value, Evicted)
	}
	c.release(i)
}

// remove unlinks slot i from the index, the list, the expiry index and the
// byte count; release then frees the slot. They are split so OnEvict can
// still read the node in between.
func (c *Cache[K, V]) remove(i int32) {
	n := &c.nodes[i]
	delete(c.index, n.key)
	c.setDeadline(i, 0)
	c.nodes[n.prev].next = n.next
	c.nodes[n.next].prev = n.prev
	c.bytes -= n.cost
}

func (c *Cache[K, V]) release(i int32) {
	// Zero the node so the key and value can be collected.
	c.nodes[i] = node[K, V]{next: c.free, expPos: -1}
	c.free = i
}

func (c *Cache[K, V]) alloc() int32 {
	if c.free != 0 {
		i := c.free
		c.free = c.nodes[i].next
		return i
	}
	if len(c.nodes) >= math.MaxInt32 {
		panic("lru: more than 2^31-1 entries")
	}
	c.nodes = append(c.nodes, node[K, V]{})
	return int32(len(c.nodes) - 1)
}

func (c *Cache[K, V]) pushFront(i int32) {
	head := &c.nodes[0]
	n := &c.nodes[i]
	n.prev, n.next = 0, head.next
	c.nodes[head.next].prev = i
	c.nodes[0].next = i
}

func (c *Cache[K, V]) moveToFront(i int32) {
	if c.nodes[0].next == i {
		return
	}
	n := &c.nodes[i]
	c.nodes[n.prev].next = n.next
	c.nodes[n.next].prev = n.prev
	c.pushFront(i)
}

// setDeadline sets slot i's deadline and keeps the expiry index in step.
func (c *Cache[K, V]) setDeadline(i int32, deadline int64) {
	n := &c.nodes[i]
	n.deadline = deadline
	switch {
	case deadline != 0 && n.expPos < 0:
		n.expPos = int32(len(c.expiring))
		c.expiring = append(c.expiring, i)
	case deadline == 0 && n.expPos >= 0:
		last := c.expiring[len(c.expiring)-1]
		c.expiring[n.expPos] = last
		c.nodes[last].expPos = n.expPos
		c.expiring = c.expiring[:len(c.expiring)-1]
		n.expPos = -1
	}
}

// rand returns a pseudo-random number in [0, n) (xorshift64*); sampling
// needs spread, not unpredictability.
func (c *Cache[K, V]) rand(n int) int {
	x := c.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	c.rng = x
	return int((x * 0x2545F4914F6CDD1D >> 33) % uint64(n))
}
