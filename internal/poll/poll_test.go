package poll_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	err := poll.Until(context.Background(), 5*time.Second, time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Until = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestUntilReturnsTheLastErrorAtTheDeadline(t *testing.T) {
	calls := 0
	last := errors.New("last")
	begin := time.Now()
	err := poll.Until(context.Background(), 30*time.Millisecond, time.Millisecond, func() error {
		calls++
		if time.Since(begin) > 20*time.Millisecond {
			return last
		}
		return errors.New("early")
	})
	if err != last {
		t.Fatalf("Until = %v, want the condition's last error", err)
	}
	if calls < 2 {
		t.Fatalf("condition called %d times in 30ms at a 1ms interval, want it retried", calls)
	}
}

func TestUntilCallsOnceWithAZeroTimeout(t *testing.T) {
	calls := 0
	err := poll.Until(context.Background(), 0, time.Hour, func() error { calls++; return errors.New("no") })
	if err == nil || calls != 1 {
		t.Fatalf("Until = %v after %d calls, want an error after 1", err, calls)
	}
}

func TestUntilStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cond := errors.New("never")
	calls := 0
	err := poll.Until(ctx, time.Hour, time.Millisecond, func() error {
		calls++
		if calls == 2 {
			cancel()
		}
		return cond
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cond) {
		t.Fatalf("Until = %v, want context.Canceled joined with the condition's error", err)
	}
}
