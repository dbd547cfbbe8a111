package loadgen

import (
	"slices"
	"time"
)

// Outages: the stage-10 lesson is "kill X under load and watch which
// operations keep working", so each operation's summary says how long its
// worst run of failures lasted. An outage of an operation is a stretch of
// arrivals of it that all failed: it begins at the due time of the first
// failed arrival and ends at the due time of the next arrival that
// succeeded, or at the run's end if none did. Due times, not completion
// times: answers come back out of order (a request that times out ends 5 s
// after a later one that succeeded), and an arrival's due time is when the
// person wanted the answer.

// outcome is one arrival of an operation: when it was due and whether it
// succeeded.
type outcome struct {
	due time.Time
	ok  bool
}

// longestOutage returns the longest stretch of failed arrivals in
// outcomes, which it sorts by due time, ending the last stretch at end if
// no success follows it. No failure is 0. Not safe for concurrent use.
func longestOutage(outcomes []outcome, end time.Time) time.Duration {
	slices.SortStableFunc(outcomes, func(a, b outcome) int { return a.due.Compare(b.due) })
	var (
		longest time.Duration
		began   time.Time // zero outside an outage
	)
	for _, o := range outcomes {
		switch {
		case !o.ok && began.IsZero():
			began = o.due
		case o.ok && !began.IsZero():
			longest = max(longest, o.due.Sub(began))
			began = time.Time{}
		}
	}
	if !began.IsZero() && end.After(began) {
		longest = max(longest, end.Sub(began))
	}
	return longest
}
