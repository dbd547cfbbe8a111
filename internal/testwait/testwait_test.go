package testwait_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
)

// recorder is a testing.TB that keeps a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = strings.TrimSpace(fmt.Sprintf(format, args...))
	// Fatalf must not return to the caller; Goexit ends the goroutine the
	// way testing's own Fatalf does.
	runtime.Goexit()
}

func TestRetryUntilWaitsForTheCondition(t *testing.T) {
	n := 0
	testwait.RetryUntil(t, 5*time.Second, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("condition called %d times, want 3", n)
	}
}

func TestRetryUntilFailsWithTheLastError(t *testing.T) {
	r := run(func(tb testing.TB) {
		testwait.RetryUntil(tb, 20*time.Millisecond, func() error { return errors.New("replica-1 is behind") })
	})
	if !strings.Contains(r.fatal, "not true after 20ms: replica-1 is behind") {
		t.Fatalf("Fatalf(%q), want the timeout and the condition's error", r.fatal)
	}
}

func TestUntilNamesWhatItWaitedFor(t *testing.T) {
	r := run(func(tb testing.TB) {
		testwait.Until(tb, 20*time.Millisecond, "the lb ready", func() bool { return false })
	})
	if !strings.Contains(r.fatal, "waiting for the lb ready") {
		t.Fatalf("Fatalf(%q), want it to name the condition", r.fatal)
	}
	took := testwait.Until(t, 5*time.Second, "true", func() bool { return true })
	if took >= time.Second {
		t.Fatalf("Until of a condition that holds took %v", took)
	}
}

// run calls f with a recorder in a goroutine of its own, as Fatalf ends it.
func run(f func(tb testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}
