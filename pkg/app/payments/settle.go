package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

// Settling what nobody retries.
//
// A payment whose outcome its call never learned stays pending until a
// retry with its key asks the processor. A client that never retries
// (the reader closed the tab) would leave a charge taken and, for a badge,
// never granted. SettlePending is the sweep that closes that gap: run now
// and then by the payments node, it asks the processor about every payment
// pending for longer than a call can take, and records what the processor
// knows.
//
// A payment the processor has no charge for stays pending: its call died
// before the charge reached the processor, or the charge is on its way.
// Marking it failed could race a retry whose charge is in flight, and
// leaving it costs nothing: no money has moved, and a retry with its key
// still completes it.

// MaxSettle is the most pending payments one SettlePending call looks at.
const MaxSettle = 100

// SettlePending asks the processor about up to MaxSettle payments pending
// for longer than minAge, oldest first, and records each outcome it
// knows. minAge should exceed ChargeTimeout, so that the sweep leaves the
// calls still waiting for their answer alone. It returns how many it
// settled.
func (s *Service) SettlePending(ctx context.Context, minAge time.Duration) (settled int, err error) {
	pairs, err := kv.Scan(ctx, s.st, bucketPending, store.ScanOptions{Limit: MaxSettle})
	if err != nil {
		return 0, fmt.Errorf("payments: read pending: %w", err)
	}
	cutoff := s.now().Add(-minAge)
	for _, p := range pairs {
		if ids.Time(p.Key).After(cutoff) {
			break // ids are time-ordered: the rest are younger still
		}
		rec, raw, err := s.load(ctx, p.Key)
		if err != nil {
			return settled, err
		}
		if rec.Status != StatusPending {
			continue // settled since the scan
		}
		res, err := s.lookup(ctx, rec.ID)
		if errors.Is(err, ErrNoCharge) {
			continue
		}
		if err != nil {
			return settled, fmt.Errorf("payments: look up payment %s: %w", rec.ID, err)
		}
		if _, err := s.settle(ctx, rec, raw, res); err != nil && !isOutcome(err) {
			return settled, err
		}
		settled++
	}
	return settled, nil
}

// isOutcome reports whether err is a payment's outcome (a decline, a
// failure) rather than a failure to record it.
func isOutcome(err error) bool {
	return errors.Is(err, ErrDeclined) || errors.Is(err, ErrFailed)
}
