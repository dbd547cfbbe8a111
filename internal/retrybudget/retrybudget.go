// Package retrybudget bounds the retries of a client by the requests it
// makes (Finagle's RetryBudget): retries may be a fraction of the requests
// of the last ten seconds, plus a small floor per second, so that when
// everything behind the client fails it sends at most 1+fraction times its
// load rather than 1+retries times. It is a leaf, used by the lb
// (a retry on another backend) and the service client (pkg/app/svc/rpc).
package retrybudget

import (
	"math"
	"sync/atomic"
	"time"
)

// Window is how many seconds of requests and retries the budget counts.
const Window = 10

// Budget allows retries up to Ratio × requests plus MinPerSecond per
// second over the last Window seconds. It is safe for concurrent use and
// lock-free; counts racing a slot's turnover may be lost, which only makes
// the budget a little approximate.
type Budget struct {
	ratio     float64
	minPerSec int64
	requests  [Window]slot
	retries   [Window]slot
}

type slot struct {
	sec atomic.Int64
	n   atomic.Int64
}

// New returns a budget that allows ratio (0.2: 20 %) of the requests as
// retries, plus minPerSec retries a second whatever the requests.
func New(ratio float64, minPerSec int) *Budget {
	return &Budget{ratio: ratio, minPerSec: int64(minPerSec)}
}

func (s *slot) add(sec int64) {
	if old := s.sec.Load(); old != sec && s.sec.CompareAndSwap(old, sec) {
		s.n.Store(0)
	}
	s.n.Add(1)
}

func sum(slots *[Window]slot, sec int64) int64 {
	var n int64
	for i := range slots {
		if s := slots[i].sec.Load(); s > sec-Window && s <= sec {
			n += slots[i].n.Load()
		}
	}
	return n
}

// Request records one request (a deposit into the budget).
func (b *Budget) Request(now time.Time) {
	sec := now.Unix()
	b.requests[sec%Window].add(sec)
}

// Allow reports whether one more retry fits the budget, and if so counts it.
func (b *Budget) Allow(now time.Time) bool {
	sec := now.Unix()
	limit := int64(math.Floor(b.ratio*float64(sum(&b.requests, sec)))) + b.minPerSec*Window
	if sum(&b.retries, sec) >= limit {
		return false
	}
	b.retries[sec%Window].add(sec)
	return true
}
