// Package testwait is how tests wait for a condition instead of sleeping
// for a guessed time. It is a leaf (it imports only internal/poll), so the
// tests of any package, pkg/cluster's and pkg/store's included, can use it
// without an import cycle; internal/testcluster builds on it.
package testwait

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
)

// Interval is how often a condition is tried: short next to the timeouts
// tests give (seconds), long enough that polling costs nothing.
const Interval = 10 * time.Millisecond

// RetryUntil calls fn until it returns nil, failing the test with fn's last
// error when timeout passes: the error says what is still missing.
func RetryUntil(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	if err := poll.Until(context.Background(), timeout, Interval, fn); err != nil {
		tb.Fatalf("not true after %v: %v", timeout, err)
	}
}

// Until polls cond until it holds, failing the test with what (the
// condition in words) when timeout passes. It returns how long the wait
// took, for tests that report or bound it.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	begin := time.Now()
	RetryUntil(tb, timeout, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
	return time.Since(begin)
}
