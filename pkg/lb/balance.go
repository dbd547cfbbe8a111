package lb

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// This file holds the balancer's pure algorithms: no I/O, no clocks of their
// own (time is passed in), table-tested in balance_test.go.

// smoothWeighted is nginx's smooth weighted round robin: each pick adds every
// weight to its current value, picks the largest current value and subtracts
// the total from it. Weights 5,1,1 give a,a,b,a,c,a,a rather than
// a,a,a,a,a,b,c. It is not safe for concurrent use.
type smoothWeighted struct {
	current []int
}

// next returns the index in weights of the next pick, or -1 when weights is
// empty. Weights below 1 count as 1. A change of len(weights) restarts the
// sequence.
func (s *smoothWeighted) next(weights []int) int {
	if len(weights) == 0 {
		return -1
	}
	if len(s.current) != len(weights) {
		s.current = make([]int, len(weights))
	}
	best, total := -1, 0
	for i, w := range weights {
		if w < 1 {
			w = 1
		}
		s.current[i] += w
		total += w
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	s.current[best] -= total
	return best
}

// leastLoaded returns the index of the smallest load, scanning from start so
// that ties rotate among equals; -1 when loads is empty.
func leastLoaded(loads []int64, start int) int {
	n := len(loads)
	if n == 0 {
		return -1
	}
	start %= n
	if start < 0 {
		start += n
	}
	best := start
	for k := 1; k < n; k++ {
		i := (start + k) % n
		if loads[i] < loads[best] {
			best = i
		}
	}
	return best
}

// ejectionTime is how long the n-th consecutive ejection of a backend lasts:
// base doubled n-1 times, capped at max (Envoy's outlier detection).
func ejectionTime(base, max time.Duration, n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	if d > max {
		return max
	}
	return d
}

// outcome is what one response says about the backend that sent it, for
// passive ejection.
type outcome int

const (
	// outcomeOK: the backend works (any status below 500).
	outcomeOK outcome = iota
	// outcomeFailed: the backend failed; it counts towards ejection.
	outcomeFailed
	// outcomeDependency: the backend works, but something behind it (the
	// store failing over, a cache) does not, and the backend says when to
	// come back. It neither counts towards ejection nor forgives earlier
	// failures: whether the node itself is down is for the active checks to
	// say. Ejecting it would only move its requests to nodes that share the
	// same dependency, and at worst leave none.
	outcomeDependency
)

// outcomeOf returns the outcome of a response with status, which carried a
// Retry-After field or not. Only a 503 with Retry-After is a dependency's
// outage (RFC 9110: the server is temporarily unable to handle the request
// and says how long to wait); a 500, 502 or 504, or a 503 without
// Retry-After, is the node's own failure, as before.
func outcomeOf(status int, retryAfter bool) outcome {
	switch {
	case status < 500:
		return outcomeOK
	case status == 503 && retryAfter:
		return outcomeDependency
	}
	return outcomeFailed
}

// maxEjected is how many of n backends may be ejected at once under a cap of
// pct percent; at least one may always be, as in Envoy, so that a pool of two
// can still eject its bad node.
func maxEjected(n, pct int) int {
	if n == 0 || pct == 0 {
		return 0
	}
	m := n * pct / 100
	if m < 1 {
		m = 1
	}
	return m
}

// hashString is 64-bit FNV-1a.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// hashBytes is hashString of string(b), without the conversion.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: it spreads the bits of x.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// rendezvous returns the index of the node that key belongs to by highest
// random weight hashing over nodeHashes (hashString of each node's name); -1
// when there is none. Every balancer with the same nodes agrees, and removing
// a node moves only the keys that were on it.
func rendezvous(key uint64, nodeHashes []uint64) int {
	best, bestScore := -1, uint64(0)
	for i, nh := range nodeHashes {
		if s := mix64(nh ^ key); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// latencyHistogram counts durations in log-scale buckets, four per power of
// two of microseconds (about 19% wide), with atomic counters so that the hot
// path takes no lock. It yields quantiles for Status and buckets for
// Prometheus.
type latencyHistogram struct {
	counts [histBuckets]atomic.Uint64
	sumNs  atomic.Uint64
	total  atomic.Uint64
}

const histBuckets = 4 * 28 // up to 2^28 µs, about 4.5 minutes

// histIndex maps a duration in microseconds to its bucket.
func histIndex(us uint64) int {
	if us < 4 {
		return int(us)
	}
	e := 63 - bits.LeadingZeros64(us) // us in [2^e, 2^(e+1))
	i := 4*(e-1) + int((us>>(e-2))&3)
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the exclusive upper bound of bucket i, in microseconds.
func histUpper(i int) uint64 {
	if i < 4 {
		return uint64(i) + 1
	}
	e := i/4 + 1
	m := uint64(i%4) + 1
	return (4 + m) << (e - 2)
}

func (h *latencyHistogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d/time.Microsecond))].Add(1)
	h.sumNs.Add(uint64(d))
	h.total.Add(1)
}

func (h *latencyHistogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.sumNs.Store(0)
	h.total.Store(0)
}

// quantile returns the upper bound of the bucket holding quantile q (0..1),
// or 0 when the histogram is empty.
func (h *latencyHistogram) quantile(q float64) time.Duration {
	var snap [histBuckets]uint64
	var total uint64
	for i := range h.counts {
		snap[i] = h.counts[i].Load()
		total += snap[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range snap {
		seen += c
		if seen >= rank {
			return time.Duration(histUpper(i)) * time.Microsecond
		}
	}
	return time.Duration(histUpper(histBuckets-1)) * time.Microsecond
}
