package loadgen

import "time"

// LongestOutage runs longestOutage over arrivals due at the given offsets
// from one instant, ok[i] the outcome of the i-th, with the run ending at
// offset end.
func LongestOutage(due []time.Duration, ok []bool, end time.Duration) time.Duration {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	outcomes := make([]outcome, len(due))
	for i := range due {
		outcomes[i] = outcome{due: t0.Add(due[i]), ok: ok[i]}
	}
	return longestOutage(outcomes, t0.Add(end))
}
