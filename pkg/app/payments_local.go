package app

import (
	"context"
	"fmt"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/payments"
)

// localPayments is the payments service inside the app's process, as
// NewServices builds it for stages 1 to 9: payments.Service over the app's
// store, with the users side of its badge event applied in-process too.
//
// At stage 10 the badge.granted event leaves the payments node's outbox
// over NATS for the users service (docs/events.md). In one process there
// is no publisher of the payments outbox (the node runs one only beside a
// payments node), and at --jobs=inline no NATS at all: an event left there
// would never grant its badge. Both services share the store here, and the
// transport between two services of one process is a call. So every badge
// purchase, once the service has answered, drains the outbox into
// accounts.HandleBadgeGranted and removes what it applied, the same steps
// as the publisher and the subscriber (in the same order: apply, then
// remove), at every --jobs setting:
//
//   - Never lost: the event committed with the payment's success; it
//     leaves the outbox only after it was applied. If the app dies in
//     between, or the grant fails, it stays there, and the next purchase
//     (a retry with the same key included: it answers the same success)
//     drains it.
//   - Never twice: ApplyBadgeEvent records the event id with the badge, so
//     two drains racing over one event grant one badge.
//
// A purchase that succeeded but whose grant failed (the store went away
// between the two) answers the grant's error, so the client retries with
// its key: the retry charges nothing and grants the badge. What this does
// not cover, as no sweep runs in-process: a payment left pending (the
// processor's answer came too late) that nobody retries, and an event
// stranded by a crash when nobody buys a badge again.
type localPayments struct {
	*payments.Service
	users *accounts.Service
}

// BuySupporterBadge buys the badge and grants it.
func (p localPayments) BuySupporterBadge(ctx context.Context, req payments.BadgeRequest) (payments.Payment, error) {
	pay, err := p.Service.BuySupporterBadge(ctx, req)
	// Drain whatever the answer: a call that lost its outcome, or ran
	// alongside another with the key, may have committed an event too.
	// The money has moved: the grant does not stop with the caller.
	gerr := p.grant(context.WithoutCancel(ctx), pay.ID)
	if err == nil && gerr != nil {
		return pay, fmt.Errorf("payments: payment %s succeeded; its badge could not be granted yet, retry with the same idempotency key: %w", pay.ID, gerr)
	}
	return pay, err
}

// grant applies the badge events in the outbox, oldest first, and removes
// those applied. It returns the error of the event of payment paymentID,
// if that one failed; another's failure leaves it in the outbox for the
// next call.
func (p localPayments) grant(ctx context.Context, paymentID string) error {
	for {
		evs, err := p.PendingEvents(ctx, payments.MaxEvents)
		if err != nil {
			return err
		}
		var applied []string
		var mine error
		for _, ev := range evs {
			if err := p.users.HandleBadgeGranted(ctx, ev.Event); err != nil {
				if ev.PaymentID == paymentID {
					mine = err
				}
				continue
			}
			applied = append(applied, ev.ID)
		}
		if len(applied) > 0 {
			if err := p.MarkPublished(ctx, applied); err != nil {
				return err
			}
		}
		if mine != nil || len(evs) < payments.MaxEvents || len(applied) == 0 {
			return mine
		}
	}
}
