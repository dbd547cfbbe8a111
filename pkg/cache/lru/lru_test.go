package lru_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/scalestack/scalestack/pkg/cache/lru"
)

func byteSize(k string, v []byte) int64 { return int64(len(k) + cap(v)) }

// newEntries returns a cache that fits exactly n entries whose key and value
// together are 10 bytes.
func newEntries(tb testing.TB, n int) *lru.Cache[string, []byte] {
	tb.Helper()
	probe := lru.New[string, []byte](0, byteSize)
	return lru.New[string, []byte](int64(n)*(10+probe.Overhead()), byteSize)
}

// val returns s as a slice whose capacity is its length, so that the bytes
// the cache counts are the ones the test expects.
func val(s string) []byte {
	b := make([]byte, len(s))
	copy(b, s)
	return b
}

func TestGetSet(t *testing.T) {
	c := newEntries(t, 3)
	for _, kv := range [][2]string{{"k1", "v-000001"}, {"k2", "v-000002"}, {"k3", "v-000003"}} {
		if !c.Set(kv[0], val(kv[1]), 0, 0) {
			t.Fatalf("Set(%q) = false, want true", kv[0])
		}
	}
	if got, ok := c.Get("k2", 0); !ok || string(got) != "v-000002" {
		t.Fatalf("Get(k2) = %q, %v, want v-000002, true", got, ok)
	}
	if _, ok := c.Get("nope", 0); ok {
		t.Fatalf("Get(nope) found, want miss")
	}
	if got, want := c.Keys(), []string{"k2", "k3", "k1"}; !slices.Equal(got, want) {
		t.Fatalf("Keys() = %v, want %v", got, want)
	}
	if got, want := c.Stats(), (lru.Stats{Hits: 1, Misses: 1}); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
}

func TestEvictionOrder(t *testing.T) {
	tests := []struct {
		name    string
		ops     []string // "s:key" set, "g:key" get, "p:key" peek, "d:key" delete
		want    []string // keys from most to least recent
		evicted []string
	}{
		{"fills", []string{"s:a", "s:b", "s:c"}, []string{"c", "b", "a"}, nil},
		{"oldest goes", []string{"s:a", "s:b", "s:c", "s:d"}, []string{"d", "c", "b"}, []string{"a"}},
		{"get refreshes", []string{"s:a", "s:b", "s:c", "g:a", "s:d"}, []string{"d", "a", "c"}, []string{"b"}},
		{"peek does not refresh", []string{"s:a", "s:b", "s:c", "p:a", "s:d"}, []string{"d", "c", "b"}, []string{"a"}},
		{"overwrite refreshes", []string{"s:a", "s:b", "s:c", "s:a", "s:d"}, []string{"d", "a", "c"}, []string{"b"}},
		{"delete frees room", []string{"s:a", "s:b", "s:c", "d:b", "s:d"}, []string{"d", "c", "a"}, nil},
		{"many evictions", []string{"s:a", "s:b", "s:c", "s:d", "s:e", "s:f"}, []string{"f", "e", "d"}, []string{"a", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEntries(t, 3)
			var evicted []string
			c.OnEvict = func(k string, _ []byte, why lru.Reason) {
				if why != lru.Evicted {
					t.Errorf("OnEvict(%q) reason %v, want evicted", k, why)
				}
				evicted = append(evicted, k)
			}
			for _, op := range tt.ops {
				k := op[2:]
				switch op[0] {
				case 's':
					c.Set(k, val("123456789"[:10-len(k)]), 0, 0)
				case 'g':
					c.Get(k, 0)
				case 'p':
					c.Peek(k, 0)
				case 'd':
					c.Delete(k, 0)
				}
			}
			if got := c.Keys(); !slices.Equal(got, tt.want) {
				t.Errorf("Keys() = %v, want %v", got, tt.want)
			}
			if !slices.Equal(evicted, tt.evicted) {
				t.Errorf("evicted %v, want %v", evicted, tt.evicted)
			}
			if got, want := c.Stats().Evictions, uint64(len(tt.evicted)); got != want {
				t.Errorf("Stats().Evictions = %d, want %d", got, want)
			}
		})
	}
}

func TestByteAccounting(t *testing.T) {
	c := lru.New[string, []byte](1000, byteSize)
	ov := c.Overhead()
	if ov <= 0 {
		t.Fatalf("Overhead() = %d, want > 0", ov)
	}
	v := make([]byte, 10, 100) // costs its capacity, not its length
	c.Set("key", v, 0, 0)
	if got, want := c.Bytes(), 3+100+ov; got != want {
		t.Fatalf("Bytes() = %d, want %d", got, want)
	}
	c.Set("key", make([]byte, 50), 0, 0) // overwrite re-accounts
	if got, want := c.Bytes(), 3+50+ov; got != want {
		t.Fatalf("after overwrite Bytes() = %d, want %d", got, want)
	}
	c.Delete("key", 0)
	if got := c.Bytes(); got != 0 {
		t.Fatalf("after Delete Bytes() = %d, want 0", got)
	}
	// An entry larger than the budget is refused and removes the old one.
	c.Set("big", make([]byte, 10), 0, 0)
	if c.Set("big", make([]byte, 1000), 0, 0) {
		t.Fatalf("Set(oversized) = true, want false")
	}
	if _, ok := c.Get("big", 0); ok {
		t.Fatalf("Get(big) after refused overwrite found the old value, want miss")
	}
	if got := c.Bytes(); got != 0 {
		t.Fatalf("Bytes() = %d, want 0", got)
	}
}

func TestDeadlines(t *testing.T) {
	c := lru.New[string, []byte](1<<20, byteSize)
	c.Set("a", val("1"), 100, 0)
	c.Set("b", val("2"), 0, 0)
	c.Set("c", val("3"), 200, 0)

	if d, ok := c.Deadline("a", 50); !ok || d != 100 {
		t.Fatalf("Deadline(a) = %d, %v, want 100, true", d, ok)
	}
	if _, ok := c.Get("a", 99); !ok {
		t.Fatalf("Get(a) at 99 missed, want hit before deadline 100")
	}
	if _, ok := c.Get("a", 100); ok {
		t.Fatalf("Get(a) at 100 hit, want miss at its deadline")
	}
	if got := c.Len(); got != 2 {
		t.Fatalf("Len() after lazy expiry = %d, want 2", got)
	}
	// KeepDeadline keeps c's deadline; a plain Set clears it.
	c.Set("c", val("33"), lru.KeepDeadline, 150)
	if d, _ := c.Deadline("c", 150); d != 200 {
		t.Fatalf("Deadline(c) after KeepDeadline = %d, want 200", d)
	}
	c.Set("c", val("333"), 0, 150)
	if d, _ := c.Deadline("c", 150); d != 0 {
		t.Fatalf("Deadline(c) after Set = %d, want 0", d)
	}
	if got := c.Expiring(); got != 0 {
		t.Fatalf("Expiring() = %d, want 0", got)
	}
	if !c.SetDeadline("b", 300, 150) || c.Expiring() != 1 {
		t.Fatalf("SetDeadline(b) did not give b a deadline")
	}
	if !c.SetDeadline("b", 0, 150) || c.Expiring() != 0 {
		t.Fatalf("SetDeadline(b, 0) did not persist b")
	}
	// A deadline in the past removes the key at once.
	if !c.SetDeadline("b", 10, 150) {
		t.Fatalf("SetDeadline(b, past) = false, want true")
	}
	if _, ok := c.Peek("b", 150); ok {
		t.Fatalf("Peek(b) after past deadline found it")
	}
	if got, want := c.Stats().Expired, uint64(2); got != want {
		t.Fatalf("Stats().Expired = %d, want %d", got, want)
	}
}

func TestExpireSampleReclaims(t *testing.T) {
	c := lru.New[string, []byte](1<<30, byteSize)
	const n = 10000
	for i := range n {
		deadline := int64(0)
		if i%2 == 0 {
			deadline = 1000 // half the keys expire at 1000
		} else if i%4 == 1 {
			deadline = 5000
		}
		c.Set(fmt.Sprint("k", i), val("v"), deadline, 0)
	}
	// Redis's cycle, run on ten ticks: sample 20, repeat while more than a
	// tenth of the sample was expired.
	for range 10 {
		for {
			_, expired := c.ExpireSample(20, 2000)
			if expired <= 2 {
				break
			}
		}
	}
	// The loop stops once about a tenth of a sample or less is expired: of
	// the 7500 keys with a deadline, 2500 are live, so a few hundred expired
	// ones may remain.
	if got, limit := c.Len(), n/2+1200; got > limit {
		t.Fatalf("Len() after sweeping = %d, want at most %d", got, limit)
	}
	for i := 0; i < n; i += 2 {
		if _, ok := c.Peek(fmt.Sprint("k", i), 2000); ok {
			t.Fatalf("Peek(k%d) returned an expired entry", i)
		}
	}
	if got, want := c.Len(), n/2; got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
}

func TestClear(t *testing.T) {
	c := newEntries(t, 3)
	c.Set("a", val("1"), 10, 0)
	c.Get("a", 0)
	c.Clear()
	if c.Len() != 0 || c.Bytes() != 0 || c.Expiring() != 0 {
		t.Fatalf("after Clear Len=%d Bytes=%d Expiring=%d, want 0", c.Len(), c.Bytes(), c.Expiring())
	}
	if got := c.Stats().Hits; got != 1 {
		t.Fatalf("Clear reset the counters: Hits = %d, want 1", got)
	}
	c.Set("b", val("2"), 0, 0)
	if _, ok := c.Get("b", 0); !ok {
		t.Fatalf("Get(b) after Clear and Set missed")
	}
}

// model is the obviously correct cache the fuzz test checks Cache against:
// a slice in recency order, scanned linearly.
type model struct {
	max, overhead int64
	entries       []modelEntry // most recent first
	stats         lru.Stats
}

type modelEntry struct {
	key      string
	value    string
	deadline int64
}

func (m *model) cost(e modelEntry) int64 { return int64(len(e.key)+len(e.value)) + m.overhead }

func (m *model) bytes() int64 {
	var b int64
	for _, e := range m.entries {
		b += m.cost(e)
	}
	return b
}

func (m *model) find(key string, now int64) int {
	for i, e := range m.entries {
		if e.key == key {
			if e.deadline != 0 && e.deadline <= now {
				m.entries = slices.Delete(m.entries, i, i+1)
				m.stats.Expired++
				return -1
			}
			return i
		}
	}
	return -1
}

func (m *model) get(key string, now int64) (string, bool) {
	i := m.find(key, now)
	if i < 0 {
		m.stats.Misses++
		return "", false
	}
	m.stats.Hits++
	e := m.entries[i]
	m.entries = slices.Delete(m.entries, i, i+1)
	m.entries = slices.Insert(m.entries, 0, e)
	return e.value, true
}

func (m *model) set(key, value string, deadline, now int64) bool {
	e := modelEntry{key, value, deadline}
	i := m.find(key, now)
	if i >= 0 {
		if deadline == lru.KeepDeadline {
			e.deadline = m.entries[i].deadline
		}
		m.entries = slices.Delete(m.entries, i, i+1)
	} else if deadline == lru.KeepDeadline {
		e.deadline = 0
	}
	if m.cost(e) > m.max {
		return false
	}
	m.entries = slices.Insert(m.entries, 0, e)
	for m.bytes() > m.max {
		m.entries = m.entries[:len(m.entries)-1]
		m.stats.Evictions++
	}
	return true
}

// FuzzCacheModel drives Cache and the model with the same operations and
// compares every answer. Run it long with go test -fuzz=FuzzCacheModel.
func FuzzCacheModel(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
	f.Add([]byte("set get peek delete deadline expire and evict all the keys"))
	f.Fuzz(checkAgainstModel)
}

func checkAgainstModel(t *testing.T, ops []byte) {
	t.Helper()
	size := func(k, v string) int64 { return int64(len(k) + len(v)) }
	probe := lru.New[string, string](0, size)
	// Room for about three entries, so evictions are frequent.
	m := &model{max: 3*probe.Overhead() + 60, overhead: probe.Overhead()}
	c := lru.New[string, string](m.max, size)
	now := int64(0)
	for len(ops) >= 2 {
		op, arg := ops[0], ops[1]
		ops = ops[2:]
		key := fmt.Sprint("k", arg%8)
		switch op % 7 {
		case 0, 1:
			value := string(make([]byte, int(arg)%40))
			deadline := int64(0)
			switch op % 3 {
			case 1:
				deadline = now + int64(arg%5) + 1
			case 2:
				deadline = lru.KeepDeadline
			}
			var got bool
			if op%7 == 0 {
				got = c.Set(key, value, deadline, now)
			} else {
				// Update first, Set only a new key: the server's way.
				present := m.find(key, now) >= 0
				var existed bool
				got, existed = c.Update(key, value, deadline, now)
				if existed != present {
					t.Fatalf("Update(%q) existed = %v, want %v", key, existed, present)
				}
				if !existed {
					got = c.Set(key, value, deadline, now)
				}
			}
			if want := m.set(key, value, deadline, now); got != want {
				t.Fatalf("Set(%q, len %d) = %v, want %v", key, len(value), got, want)
			}
		case 2:
			got, gotOK := c.Get(key, now)
			want, wantOK := m.get(key, now)
			if got != want || gotOK != wantOK {
				t.Fatalf("Get(%q) = %q, %v, want %q, %v", key, got, gotOK, want, wantOK)
			}
		case 3:
			i := m.find(key, now)
			if got, want := c.Delete(key, now), i >= 0; got != want {
				t.Fatalf("Delete(%q) = %v, want %v", key, got, want)
			}
			if i >= 0 {
				m.entries = slices.Delete(m.entries, i, i+1)
			}
		case 4:
			now += int64(arg % 4)
		case 5:
			i := m.find(key, now)
			d, ok := c.Deadline(key, now)
			if ok != (i >= 0) || (ok && d != m.entries[i].deadline) {
				t.Fatalf("Deadline(%q) = %d, %v; model has index %d", key, d, ok, i)
			}
		case 6:
			_, expired := c.ExpireSample(int(arg%4), now)
			m.stats.Expired += uint64(expired)
			// The sample is random: drop from the model exactly what
			// the cache no longer holds.
			m.entries = slices.DeleteFunc(m.entries, func(e modelEntry) bool {
				_, ok := c.Peek(e.key, now-1<<40) // an old now: no lazy expiry
				return !ok
			})
		}
		if got, want := c.Len(), len(m.entries); got != want {
			t.Fatalf("Len() = %d, want %d", got, want)
		}
		if got, want := c.Bytes(), m.bytes(); got != want {
			t.Fatalf("Bytes() = %d, want %d", got, want)
		}
		var keys []string
		for _, e := range m.entries {
			keys = append(keys, e.key)
		}
		if got := c.Keys(); !slices.Equal(got, keys) && len(got)+len(keys) > 0 {
			t.Fatalf("Keys() = %v, want %v", got, keys)
		}
		if got, want := c.Stats(), m.stats; got != want {
			t.Fatalf("Stats() = %+v, want %+v", got, want)
		}
	}
}

// TestRandomAgainstModel runs the fuzz body's logic over a fixed number of
// random operation strings so the property is checked on every test run.
func TestRandomAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		ops := make([]byte, 400)
		for i := 0; i < len(ops); i += 8 {
			binary.LittleEndian.PutUint64(ops[i:], r.Uint64())
		}
		checkAgainstModel(t, ops)
	}
}
