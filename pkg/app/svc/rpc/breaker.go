package rpc

import "time"

// The circuit breaker of one instance, as a pure state machine: times come
// in as arguments, and it is not safe for concurrent use (the Client holds
// its lock around it).
//
//	closed --(Failures consecutive failures)--> open
//	open --(Cooldown passed, next call asks)--> half-open: one trial call
//	half-open --(the trial succeeds)--> closed
//	half-open --(the trial fails)--> open again, for the next cooldown
//
// A success is an answer from the instance, errors of the service (4xx)
// included: the instance works, the call was wrong. A failure is a
// connection error, a timeout or a 5xx that is the instance's own. A
// neutral outcome (the caller gave up; the instance said its store is
// down, which every instance of the service shares) changes nothing, but
// ends a trial. Cooldowns double on each reopening up to MaxCooldown, and
// start over once the instance has closed.

// BreakerState is the state of an instance's breaker.
type BreakerState string

// The breaker's states, as /status shows them.
const (
	Closed   BreakerState = "closed"
	Open     BreakerState = "open"
	HalfOpen BreakerState = "half-open"
)

type outcome int

const (
	success outcome = iota
	failure
	neutral
)

type breaker struct {
	cfg      BreakerConfig
	state    BreakerState
	failures int           // consecutive failures while closed
	cooldown time.Duration // of the current or last opening
	until    time.Time     // open: when a trial may go
	trial    bool          // half-open: the trial call is out

	calls, failed uint64
	lastErr       string
	lastErrAt     time.Time
}

func newBreaker(cfg BreakerConfig) *breaker { return &breaker{cfg: cfg, state: Closed} }

// allow reports whether a call may go to the instance now; a true from a
// half-open breaker hands out its one trial, which the call's record
// returns.
func (b *breaker) allow(now time.Time) bool {
	switch b.state {
	case Open:
		if now.Before(b.until) {
			return false
		}
		b.state = HalfOpen
		b.trial = true
		return true
	case HalfOpen:
		if b.trial {
			return false
		}
		b.trial = true
		return true
	}
	return true
}

// available reports whether allow would say yes, without taking a trial.
func (b *breaker) available(now time.Time) bool {
	switch b.state {
	case Open:
		return !now.Before(b.until)
	case HalfOpen:
		return !b.trial
	}
	return true
}

// record notes how a call that allow let through ended, and returns the
// state change it caused (from == to when none).
func (b *breaker) record(now time.Time, o outcome, errText string) (from, to BreakerState) {
	from = b.state
	b.calls++
	switch o {
	case success:
		b.failures = 0
		if b.state == HalfOpen {
			b.state = Closed
			b.cooldown = 0
		}
	case failure:
		b.failed++
		b.lastErr, b.lastErrAt = errText, now
		b.failures++
		if b.state == HalfOpen || b.state == Closed && b.failures >= b.cfg.Failures {
			b.open(now)
		}
	case neutral:
		if b.state == HalfOpen {
			// The trial told nothing: let the next call try.
			b.trial = false
		}
	}
	if b.state != HalfOpen {
		b.trial = false
	}
	return from, b.state
}

func (b *breaker) open(now time.Time) {
	switch {
	case b.cooldown == 0:
		b.cooldown = b.cfg.Cooldown
	case b.cooldown < b.cfg.MaxCooldown:
		b.cooldown = min(2*b.cooldown, b.cfg.MaxCooldown)
	}
	b.state = Open
	b.until = now.Add(b.cooldown)
	b.trial = false
}
