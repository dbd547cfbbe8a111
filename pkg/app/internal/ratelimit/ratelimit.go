// Package ratelimit is the arithmetic of the blog's rate limits: a set of
// token buckets, one per key (a client address, an account). Each bucket
// holds up to Burst tokens and gains one every Every; a request takes one,
// or is refused and told how long until one is back. The set has no clock
// of its own (the caller passes the time) and does no I/O. A Set is safe
// for concurrent use.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Set is a set of token buckets with the same size and rate.
type Set struct {
	burst   float64
	every   time.Duration
	maxKeys int

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// New returns a set of buckets of burst tokens, each gaining one every
// every, remembering at most maxKeys keys (see Take).
func New(burst int, every time.Duration, maxKeys int) *Set {
	return &Set{burst: float64(max(burst, 1)), every: max(every, time.Nanosecond), maxKeys: max(maxKeys, 1), m: map[string]*bucket{}}
}

// refill brings b up to date at now.
func (s *Set) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(s.burst, b.tokens+float64(d)/float64(s.every))
		b.at = now
	}
}

// Take takes a token from key's bucket at now and reports true, or, if the
// bucket has none, reports false and how long until it has one.
//
// A key not seen before starts with a full bucket. When the set already
// holds maxKeys keys, it first forgets every full bucket (forgetting one
// changes nothing), then, if that was not enough, a quarter of the keys
// at random: under a flood of new keys (many addresses) some clients get a
// fresh bucket early, which is the price of bounded memory.
func (s *Set) Take(key string, now time.Time) (ok bool, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[key]
	if b == nil {
		if len(s.m) >= s.maxKeys {
			s.shrink(now)
		}
		b = &bucket{tokens: s.burst, at: now}
		s.m[key] = b
	}
	s.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(s.every))
}

// Return puts back a token taken from key's bucket (the attempt did not
// count: a log-in that succeeded, for a limit on failures).
func (s *Set) Return(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.m[key]; b != nil {
		s.refill(b, now)
		b.tokens = math.Min(s.burst, b.tokens+1)
	}
}

// shrink makes room for a new key. s.mu must be held.
func (s *Set) shrink(now time.Time) {
	for k, b := range s.m {
		if s.refill(b, now); b.tokens >= s.burst {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) <= s.maxKeys*3/4 {
			break
		}
		delete(s.m, k)
	}
}

// Len returns the number of keys remembered.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
