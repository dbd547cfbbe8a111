// Package poll waits for a condition by calling it until it holds. The
// tests (through internal/testwait), the fault runs and the benchmarks
// watch real nodes from outside, where there is no readiness channel to
// wait on, and all of them wait with this one loop.
package poll

import (
	"context"
	"errors"
	"time"
)

// Until calls fn every interval until it returns nil, timeout passes or
// ctx ends. It returns nil as soon as fn does; otherwise fn's last error,
// joined with ctx's error when ctx ended first. fn is always called at
// least once, even with a zero timeout.
func Until(ctx context.Context, timeout, interval time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}
