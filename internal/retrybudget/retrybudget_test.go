package retrybudget_test

import (
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/retrybudget"
)

func TestBudget(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := retrybudget.New(0.2, 1)
	allowed := func(now time.Time) int {
		n := 0
		for range 50 {
			if b.Allow(now) {
				n++
			}
		}
		return n
	}
	// Floor: 1 per second over a 10 s window allows 10 retries with no requests.
	if n := allowed(t0); n != 10 {
		t.Fatalf("retries allowed with no requests = %d, want 10", n)
	}
	// 100 requests add 20% of 100.
	for range 100 {
		b.Request(t0)
	}
	if n := allowed(t0); n != 20 {
		t.Fatalf("retries allowed after 100 requests = %d, want 20", n)
	}
	// After the window has passed, the old requests and retries are forgotten.
	if n := allowed(t0.Add(11 * time.Second)); n != 10 {
		t.Fatalf("retries allowed a window later = %d, want 10", n)
	}
	// No floor: nothing without requests.
	if b := retrybudget.New(0.2, 0); b.Allow(t0) {
		t.Fatal("a budget without floor or requests allowed a retry")
	}
}
