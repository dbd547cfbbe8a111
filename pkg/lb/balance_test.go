package lb

import (
	"fmt"
	"testing"
	"time"
)

func TestSmoothWeighted(t *testing.T) {
	tests := []struct {
		weights []int
		n       int
		want    string
	}{
		{[]int{5, 1, 1}, 7, "a a b a c a a"},
		{[]int{1, 1, 1}, 6, "a b c a b c"},
		{[]int{2, 1}, 6, "a b a a b a"},
		{[]int{0, 0}, 4, "a b a b"}, // weights below 1 count as 1
		{[]int{3}, 3, "a a a"},
	}
	for _, tt := range tests {
		var s smoothWeighted
		got := ""
		for i := 0; i < tt.n; i++ {
			if i > 0 {
				got += " "
			}
			got += string(rune('a' + s.next(tt.weights)))
		}
		if got != tt.want {
			t.Errorf("smoothWeighted%v = %q, want %q", tt.weights, got, tt.want)
		}
	}
	var s smoothWeighted
	if got := s.next(nil); got != -1 {
		t.Errorf("next(nil) = %d, want -1", got)
	}
}

func TestLeastLoaded(t *testing.T) {
	tests := []struct {
		loads []int64
		start int
		want  int
	}{
		{nil, 0, -1},
		{[]int64{3, 1, 2}, 0, 1},
		{[]int64{1, 1, 1}, 0, 0},
		{[]int64{1, 1, 1}, 2, 2}, // ties rotate with start
		{[]int64{1, 1, 1}, 4, 1},
		{[]int64{0, 5, 0}, 1, 2},
		{[]int64{2, 2, 1}, -1, 2},
	}
	for _, tt := range tests {
		if got := leastLoaded(tt.loads, tt.start); got != tt.want {
			t.Errorf("leastLoaded(%v, %d) = %d, want %d", tt.loads, tt.start, got, tt.want)
		}
	}
}

func TestEjectionTime(t *testing.T) {
	base, max := 5*time.Second, time.Minute
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 5 * time.Second},
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{4, 40 * time.Second},
		{5, time.Minute},
		{60, time.Minute},
	}
	for _, tt := range tests {
		if got := ejectionTime(base, max, tt.n); got != tt.want {
			t.Errorf("ejectionTime(%v, %v, %d) = %v, want %v", base, max, tt.n, got, tt.want)
		}
	}
}

func TestMaxEjected(t *testing.T) {
	tests := []struct{ n, pct, want int }{
		{0, 50, 0}, {1, 50, 1}, {2, 50, 1}, {3, 50, 1}, {4, 50, 2}, {10, 10, 1}, {2, 10, 1}, {5, 0, 0}, {4, 100, 4},
	}
	for _, tt := range tests {
		if got := maxEjected(tt.n, tt.pct); got != tt.want {
			t.Errorf("maxEjected(%d, %d) = %d, want %d", tt.n, tt.pct, got, tt.want)
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter bool
		want       outcome
	}{
		{200, false, outcomeOK},
		{404, false, outcomeOK},
		{429, true, outcomeOK},
		{499, false, outcomeOK},
		{500, false, outcomeFailed},
		{500, true, outcomeFailed},
		{502, false, outcomeFailed},
		{502, true, outcomeFailed},
		{503, false, outcomeFailed},
		{503, true, outcomeDependency},
		{504, true, outcomeFailed},
	}
	for _, tt := range tests {
		if got := outcomeOf(tt.status, tt.retryAfter); got != tt.want {
			t.Errorf("outcomeOf(%d, %v) = %d, want %d", tt.status, tt.retryAfter, got, tt.want)
		}
	}
}

func TestRendezvousMovesOnlyRemovedKeys(t *testing.T) {
	names := []string{"app-1", "app-2", "app-3", "app-4"}
	hashes := make([]uint64, len(names))
	for i, n := range names {
		hashes[i] = hashString(n)
	}
	count := make([]int, len(names))
	before := map[string]string{}
	for k := 0; k < 4000; k++ {
		key := fmt.Sprintf("session-%d", k)
		i := rendezvous(hashString(key), hashes)
		count[i]++
		before[key] = names[i]
	}
	for i, c := range count {
		if c < 800 || c > 1200 {
			t.Errorf("node %s got %d of 4000 keys, want about 1000", names[i], c)
		}
	}
	// Drop app-2: only its keys may move.
	rest := []uint64{hashes[0], hashes[2], hashes[3]}
	restNames := []string{"app-1", "app-3", "app-4"}
	for key, was := range before {
		now := restNames[rendezvous(hashString(key), rest)]
		if was != "app-2" && now != was {
			t.Fatalf("key %s moved from %s to %s though %s stayed", key, was, now, was)
		}
	}
	if got := rendezvous(1, nil); got != -1 {
		t.Errorf("rendezvous(1, nil) = %d, want -1", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us = us*9/8 + 1 {
		i := histIndex(us)
		if i < prev {
			t.Fatalf("histIndex(%d) = %d, below histIndex of a smaller value %d", us, i, prev)
		}
		prev = i
		if up := histUpper(i); us >= up {
			t.Fatalf("histIndex(%d) = %d whose upper bound %d is not above it", us, i, up)
		}
		if i > 0 && us < histUpper(i-1) {
			t.Fatalf("histIndex(%d) = %d but the bucket below ends at %d", us, i, histUpper(i-1))
		}
	}
	var h latencyHistogram
	for i := 1; i <= 100; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	if got := h.quantile(0.5); got < 50*time.Millisecond || got > 60*time.Millisecond {
		t.Errorf("p50 of 1..100 ms = %v, want 50ms to 60ms", got)
	}
	if got := h.quantile(0.99); got < 99*time.Millisecond || got > 118*time.Millisecond {
		t.Errorf("p99 of 1..100 ms = %v, want 99ms to 118ms", got)
	}
}

func TestCheckStateRiseFall(t *testing.T) {
	const rise, fall = 2, 3
	tests := []struct {
		name    string
		results string // p = pass, f = fail
		want    string // verdict after each
	}{
		{"first pass decides", "p", "H"},
		{"a backend never healthy is admitted on its first pass", "ffp", "UUH"},
		{"fall needs three", "pfffp", "HHHUU"},
		{"once healthy, rise needs two", "pfffpp", "HHHUUH"},
		{"a pass resets the fall count", "pffpff", "HHHHHH"},
	}
	for _, tt := range tests {
		var s checkState
		healthy := false
		got := ""
		for _, r := range tt.results {
			healthy, _ = s.record(r == 'p', healthy, rise, fall)
			if healthy {
				got += "H"
			} else {
				got += "U"
			}
		}
		if got != tt.want {
			t.Errorf("%s: verdicts for %s = %s, want %s", tt.name, tt.results, got, tt.want)
		}
	}
}
