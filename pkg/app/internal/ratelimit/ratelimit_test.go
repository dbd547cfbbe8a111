package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/ratelimit"
)

func TestTake(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at       time.Duration // after t0
		key      string
		put      bool // Return instead of Take
		ok       bool
		wantWait time.Duration
	}
	tests := []struct {
		name  string
		burst int
		every time.Duration
		steps []step
	}{
		{"burst then refused", 3, time.Second, []step{
			{0, "a", false, true, 0}, {0, "a", false, true, 0}, {0, "a", false, true, 0},
			{0, "a", false, false, time.Second},
			{400 * time.Millisecond, "a", false, false, 600 * time.Millisecond},
			{time.Second, "a", false, true, 0},
			{time.Second, "a", false, false, time.Second},
		}},
		{"keys are separate", 1, time.Minute, []step{
			{0, "a", false, true, 0}, {0, "b", false, true, 0},
			{0, "a", false, false, time.Minute}, {0, "b", false, false, time.Minute},
		}},
		{"refill stops at burst", 2, time.Second, []step{
			{0, "a", false, true, 0},
			{time.Hour, "a", false, true, 0}, {time.Hour, "a", false, true, 0},
			{time.Hour, "a", false, false, time.Second},
		}},
		{"return gives a token back", 1, time.Minute, []step{
			{0, "a", false, true, 0},
			{0, "a", true, false, 0},
			{0, "a", false, true, 0},
			{0, "a", false, false, time.Minute},
		}},
		{"return never passes burst", 1, time.Minute, []step{
			{0, "a", false, true, 0},
			{0, "a", true, false, 0}, {0, "a", true, false, 0},
			{0, "a", false, true, 0},
			{0, "a", false, false, time.Minute},
		}},
		{"the clock going back gives nothing", 1, time.Second, []step{
			{10 * time.Second, "a", false, true, 0},
			{0, "a", false, false, time.Second},
		}},
	}
	for _, tt := range tests {
		s := ratelimit.New(tt.burst, tt.every, 100)
		for i, st := range tt.steps {
			now := t0.Add(st.at)
			if st.put {
				s.Return(st.key, now)
				continue
			}
			ok, wait := s.Take(st.key, now)
			if ok != st.ok || wait != st.wantWait {
				t.Errorf("%s: step %d: Take(%q) = %v, %v; want %v, %v", tt.name, i, st.key, ok, wait, st.ok, st.wantWait)
			}
		}
	}
}

// The set remembers at most maxKeys keys: full buckets are forgotten
// first, and a key whose bucket is empty is kept while there is room.
func TestMaxKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	s := ratelimit.New(1, time.Hour, 10)
	s.Take("abuser", now)
	for i := range 9 {
		s.Take(fmt.Sprint("k", i), now)
	}
	if got := s.Len(); got != 10 {
		t.Fatalf("Len() = %d, want 10", got)
	}
	for i := range 1000 {
		s.Take(fmt.Sprint("flood", i), now)
		if got := s.Len(); got > 10 {
			t.Fatalf("Len() = %d after %d new keys, want at most 10", got, i+1)
		}
	}
	// Buckets that refilled are dropped before any other.
	s = ratelimit.New(1, time.Second, 3)
	s.Take("abuser", now.Add(time.Hour))
	s.Take("idle1", now)
	s.Take("idle2", now)
	s.Take("new", now.Add(time.Hour))
	if ok, _ := s.Take("abuser", now.Add(time.Hour)); ok {
		t.Errorf("the abuser's empty bucket was forgotten to make room while full ones could go")
	}
}
