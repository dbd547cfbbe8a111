package cdn

import (
	"slices"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/cache/lru"
	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

// store holds the stored responses under a byte budget, and the indexes
// that find every variant of a URL and every object of a surrogate key.
type store struct {
	mu   sync.Mutex
	lru  *lru.Cache[string, *object]
	urls map[string]*urlEntry
	tags map[string]map[string]struct{} // surrogate key → LRU keys

	evictions uint64 // guarded by mu
	expired   uint64
}

// urlEntry is what the store knows of one URL: the fields its latest
// response varies on, and the LRU keys of the variants held.
type urlEntry struct {
	uri  string
	vary []string
	keys map[string]struct{}
}

func newStore(maxBytes int64) *store {
	s := &store{
		lru:  lru.New[string, *object](maxBytes, func(_ string, o *object) int64 { return o.size }),
		urls: make(map[string]*urlEntry),
		tags: make(map[string]map[string]struct{}),
	}
	s.lru.OnEvict = func(_ string, o *object, why lru.Reason) {
		if why == lru.Evicted {
			s.evictions++
		} else {
			s.expired++
		}
		s.unindex(o)
	}
	return s
}

// lookup returns the stored variant of uri that a request with header
// reqH selects, if any, and the key under which a fetch for it coalesces.
func (s *store) lookup(uri string, reqH map[string][]string, now time.Time) (*object, string) {
	ns := now.UnixNano()
	s.mu.Lock()
	ue := s.urls[uri]
	if ue == nil {
		s.mu.Unlock()
		return nil, uri
	}
	if len(ue.vary) == 0 {
		o, _ := s.lru.Get(uri, ns)
		s.mu.Unlock()
		return o, uri
	}
	vary := ue.vary
	s.mu.Unlock()
	key := objectKey(uri, vary, httpcache.VaryKey(vary, reqH))
	s.mu.Lock()
	o, _ := s.lru.Get(key, ns)
	s.mu.Unlock()
	return o, key
}

// lookupFast returns the stored response for uri when the URL does not
// vary, without allocating: the hit path of the server.
func (s *store) lookupFast(uri []byte, now time.Time) *object {
	s.mu.Lock()
	ue := s.urls[string(uri)]
	if ue == nil || len(ue.vary) > 0 {
		s.mu.Unlock()
		return nil
	}
	o, _ := s.lru.Get(ue.uri, now.UnixNano())
	s.mu.Unlock()
	return o
}

// put stores o until deadline, replacing the variant under the same key,
// and reports whether it fits the budget. A response that varies on other
// fields than the URL's earlier ones replaces all of them, since the
// earlier variants can no longer be selected.
func (s *store) put(o *object, deadline, now time.Time) bool {
	if !deadline.After(now) {
		return false
	}
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	ue := s.urls[o.uri]
	if ue != nil && !slices.Equal(ue.vary, o.vary) {
		s.deleteURLLocked(o.uri, ns)
		ue = nil
	}
	if old, ok := s.lru.Peek(o.key, ns); ok {
		s.lru.Delete(o.key, ns)
		s.unindex(old)
	}
	if !s.lru.Set(o.key, o, deadline.UnixNano(), ns) {
		return false
	}
	ue = s.urls[o.uri] // Set may have evicted the URL's other variants
	if ue == nil {
		ue = &urlEntry{uri: o.uri, vary: o.vary, keys: make(map[string]struct{}, 1)}
		s.urls[o.uri] = ue
	}
	ue.keys[o.key] = struct{}{}
	for _, t := range o.tags {
		set := s.tags[t]
		if set == nil {
			set = make(map[string]struct{}, 1)
			s.tags[t] = set
		}
		set[o.key] = struct{}{}
	}
	return true
}

// remove deletes the object stored under key if it is still o.
func (s *store) remove(o *object, now time.Time) {
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.lru.Peek(o.key, ns); ok && cur == o {
		s.lru.Delete(o.key, ns)
		s.unindex(o)
	}
}

// purgeURL removes every variant of uri and returns how many there were.
func (s *store) purgeURL(uri string, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteURLLocked(uri, now.UnixNano())
}

func (s *store) deleteURLLocked(uri string, ns int64) int {
	ue := s.urls[uri]
	if ue == nil {
		return 0
	}
	keys := make([]string, 0, len(ue.keys))
	for k := range ue.keys {
		keys = append(keys, k)
	}
	return s.deleteKeysLocked(keys, ns)
}

// purgeAll removes every object and returns how many there were.
func (s *store) purgeAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lru.Len()
	s.lru.Clear()
	s.urls = make(map[string]*urlEntry)
	s.tags = make(map[string]map[string]struct{})
	return n
}

// purgeTag removes every object that listed the surrogate key tag and
// returns how many there were.
func (s *store) purgeTag(tag string, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.tags[tag]
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	return s.deleteKeysLocked(keys, now.UnixNano())
}

func (s *store) deleteKeysLocked(keys []string, ns int64) int {
	n := 0
	for _, k := range keys {
		// Peek removes an expired entry itself, through OnEvict.
		if o, ok := s.lru.Peek(k, ns); ok {
			s.lru.Delete(k, ns)
			s.unindex(o)
			n++
		}
	}
	return n
}

// unindex forgets o in the URL and surrogate key indexes. The caller holds
// mu (OnEvict runs inside the LRU's calls, which are made under mu).
func (s *store) unindex(o *object) {
	if ue := s.urls[o.uri]; ue != nil {
		delete(ue.keys, o.key)
		if len(ue.keys) == 0 {
			delete(s.urls, o.uri)
		}
	}
	for _, t := range o.tags {
		if set := s.tags[t]; set != nil {
			delete(set, o.key)
			if len(set) == 0 {
				delete(s.tags, t)
			}
		}
	}
}

// expire removes expired objects nobody asks for, sampling as Redis does:
// again while more than a quarter of a sample had expired.
func (s *store) expire(now time.Time) {
	ns := now.UnixNano()
	for range 16 {
		s.mu.Lock()
		sampled, expired := s.lru.ExpireSample(20, ns)
		s.mu.Unlock()
		if sampled == 0 || expired*4 <= sampled {
			return
		}
	}
}

type storeStats struct {
	objects, bytes, maxBytes int64
	evictions, expired       uint64
	urls, tags               int
}

func (s *store) stats() storeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return storeStats{
		objects:   int64(s.lru.Len()),
		bytes:     s.lru.Bytes(),
		maxBytes:  s.lru.MaxBytes(),
		evictions: s.evictions,
		expired:   s.expired,
		urls:      len(s.urls),
		tags:      len(s.tags),
	}
}
