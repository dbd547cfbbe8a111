package rpc

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	cfg := BreakerConfig{Failures: 3, Cooldown: time.Second, MaxCooldown: 3 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		now   time.Duration
		do    string // "allow", "ok", "fail", "neutral"
		allow bool   // for "allow": the answer expected
		state BreakerState
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after the consecutive failures", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "fail", false, Open},
			{500 * time.Millisecond, "allow", false, Open},
		}},
		{"a success forgives the failures before it", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "ok", false, Closed},
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "allow", true, Closed},
		}},
		{"neutral outcomes neither count nor forgive", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "neutral", false, Closed},
			{0, "fail", false, Open},
		}},
		{"one trial after the cooldown; its success closes", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "fail", false, Open},
			{time.Second, "allow", true, HalfOpen},
			{time.Second, "allow", false, HalfOpen}, // the trial is out: nobody else
			{time.Second, "ok", false, Closed},
			{time.Second, "allow", true, Closed},
		}},
		{"a failed trial reopens for twice the cooldown, up to the maximum", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "fail", false, Open},
			{time.Second, "allow", true, HalfOpen}, {time.Second, "fail", false, Open},
			{2900 * time.Millisecond, "allow", false, Open},
			{3 * time.Second, "allow", true, HalfOpen}, {3 * time.Second, "fail", false, Open}, // 4s, capped at 3s
			{5900 * time.Millisecond, "allow", false, Open},
			{6 * time.Second, "allow", true, HalfOpen}, {6 * time.Second, "fail", false, Open}, // 3s again
			{8900 * time.Millisecond, "allow", false, Open},
			{10 * time.Second, "allow", true, HalfOpen}, {10 * time.Second, "ok", false, Closed},
			// Closed again: the next opening starts from Cooldown.
			{11 * time.Second, "fail", false, Closed}, {11 * time.Second, "fail", false, Closed}, {11 * time.Second, "fail", false, Open},
			{12 * time.Second, "allow", true, HalfOpen},
		}},
		{"a neutral trial lets the next call try", []step{
			{0, "fail", false, Closed}, {0, "fail", false, Closed}, {0, "fail", false, Open},
			{time.Second, "allow", true, HalfOpen}, {time.Second, "neutral", false, HalfOpen},
			{time.Second, "allow", true, HalfOpen},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBreaker(cfg)
			for i, s := range tt.steps {
				now := at(s.now)
				switch s.do {
				case "allow":
					if got := b.allow(now); got != s.allow {
						t.Fatalf("step %d: allow at +%v = %v, want %v", i, s.now, got, s.allow)
					}
				case "ok":
					b.record(now, success, "")
				case "fail":
					b.record(now, failure, "refused")
				case "neutral":
					b.record(now, neutral, "")
				}
				if b.state != s.state {
					t.Fatalf("step %d (%s at +%v): state %s, want %s", i, s.do, s.now, b.state, s.state)
				}
			}
		})
	}
}

func TestBreakerCounts(t *testing.T) {
	b := newBreaker(BreakerConfig{Failures: 5, Cooldown: time.Second, MaxCooldown: time.Second})
	now := time.Unix(1000, 0)
	b.record(now, success, "")
	b.record(now, failure, "connection refused")
	b.record(now, neutral, "")
	if b.calls != 3 || b.failed != 1 || b.lastErr != "connection refused" || !b.lastErrAt.Equal(now) {
		t.Fatalf("calls %d, failed %d, last error %q at %v; want 3, 1, connection refused at %v", b.calls, b.failed, b.lastErr, b.lastErrAt, now)
	}
}
