package lru_test

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	hashicorp "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/scalestack/scalestack/pkg/cache/lru"
)

// The benchmarks compare our LRU with hashicorp/golang-lru/v2 (a classic
// locked LRU) and maypok86/otter/v2 (a concurrent W-TinyLFU cache) on a Zipf
// trace, used cache-aside: Get, and Set on a miss. Run with
//
//	go test -run XXX -bench . -benchtime 1x ./pkg/cache/lru   (hit ratios)
//	go test -run XXX -bench 'Ops' ./pkg/cache/lru              (speed)
//
// The caches are bounded by entry count here (golang-lru knows no bytes):
// ours gets a byte budget of exactly n entries of equal size.

const keySpace = 1 << 20

// zipfTrace returns n keys drawn from a Zipf distribution with exponent s
// over keySpace keys, the same for every run.
func zipfTrace(n int, s float64) []string {
	r := rand.New(rand.NewPCG(42, 7))
	z := rand.NewZipf(r, s, 1, keySpace-1)
	trace := make([]string, n)
	for i := range trace {
		trace[i] = "key:" + strconv.FormatUint(z.Uint64(), 10)
	}
	return trace
}

// cacheUnderTest is what the benchmarks drive: cache-aside over a trace.
type cacheUnderTest interface {
	get(key string) bool
	set(key string, value []byte)
}

var benchValue = make([]byte, 16)

// ours is the LRU under a mutex, as a caller without sharding would use it.
type ours struct {
	mu sync.Mutex
	c  *lru.Cache[string, []byte]
}

func newOurs(entries int) *ours {
	// Every entry costs 1 plus the overhead; the budget holds exactly entries.
	probe := lru.New[string, []byte](0, nil)
	return &ours{c: lru.New[string, []byte](int64(entries)*probe.Overhead(), nil)}
}

func (o *ours) get(k string) bool {
	o.mu.Lock()
	_, ok := o.c.Get(k, 1)
	o.mu.Unlock()
	return ok
}

func (o *ours) set(k string, v []byte) {
	o.mu.Lock()
	o.c.Set(k, v, 0, 1)
	o.mu.Unlock()
}

// oursSharded spreads keys over 16 locked LRUs, as pkg/cache does.
type oursSharded struct {
	seed   maphash.Seed
	shards [16]ours
}

func newOursSharded(entries int) *oursSharded {
	s := &oursSharded{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].c = newOurs(entries / len(s.shards)).c
	}
	return s
}

func (s *oursSharded) shard(k string) *ours {
	return &s.shards[maphash.String(s.seed, k)%uint64(len(s.shards))]
}

func (s *oursSharded) get(k string) bool      { return s.shard(k).get(k) }
func (s *oursSharded) set(k string, v []byte) { s.shard(k).set(k, v) }
func (h hashicorpLRU) get(k string) bool      { _, ok := h.c.Get(k); return ok }
func (h hashicorpLRU) set(k string, v []byte) { h.c.Add(k, v) }
func (o otterCache) get(k string) bool        { _, ok := o.c.GetIfPresent(k); return ok }
func (o otterCache) set(k string, v []byte)   { o.c.Set(k, v) }
func newHashicorp(entries int) hashicorpLRU {
	c, _ := hashicorp.New[string, []byte](entries)
	return hashicorpLRU{c}
}
func newOtter(entries int) otterCache {
	return otterCache{otter.Must(&otter.Options[string, []byte]{MaximumSize: entries})}
}

type hashicorpLRU struct {
	c *hashicorp.Cache[string, []byte]
}
type otterCache struct{ c *otter.Cache[string, []byte] }

var contenders = []struct {
	name string
	make func(entries int) cacheUnderTest
}{
	{"ours", func(n int) cacheUnderTest { return newOurs(n) }},
	{"ours-sharded", func(n int) cacheUnderTest { return newOursSharded(n) }},
	{"golang-lru", func(n int) cacheUnderTest { return newHashicorp(n) }},
	{"otter", func(n int) cacheUnderTest { return newOtter(n) }},
}

// BenchmarkHitRatio replays a Zipf trace of one million requests through
// each cache at several sizes and reports the hit ratio in percent.
func BenchmarkHitRatio(b *testing.B) {
	for _, s := range []float64{1.01, 1.2} {
		trace := zipfTrace(1_000_000, s)
		for _, size := range []int{1_000, 10_000, 100_000} {
			for _, ct := range contenders {
				b.Run(fmt.Sprintf("s=%.2f/size=%d/%s", s, size, ct.name), func(b *testing.B) {
					var hits, total int
					for b.Loop() {
						c := ct.make(size)
						for _, k := range trace {
							if c.get(k) {
								hits++
							} else {
								c.set(k, benchValue)
							}
						}
						total += len(trace)
					}
					b.ReportMetric(100*float64(hits)/float64(total), "hit%")
				})
			}
		}
	}
}

// BenchmarkOps measures one cache-aside request (Get, Set on a miss) on a
// Zipf trace (s=1.01) with a cache of 10% of the key space (a hit ratio of
// about 76%), from one goroutine and from GOMAXPROCS goroutines.
func BenchmarkOps(b *testing.B) {
	trace := zipfTrace(1<<20, 1.01)
	for _, ct := range contenders {
		b.Run("serial/"+ct.name, func(b *testing.B) {
			c := ct.make(keySpace / 10)
			i := 0
			for b.Loop() {
				k := trace[i&(len(trace)-1)]
				if !c.get(k) {
					c.set(k, benchValue)
				}
				i++
			}
		})
		b.Run("parallel/"+ct.name, func(b *testing.B) {
			c := ct.make(keySpace / 10)
			var seed sync.Mutex
			next := 0
			b.RunParallel(func(pb *testing.PB) {
				seed.Lock()
				i := next * 7919
				next++
				seed.Unlock()
				for pb.Next() {
					k := trace[i&(len(trace)-1)]
					if !c.get(k) {
						c.set(k, benchValue)
					}
					i++
				}
			})
		})
	}
}
