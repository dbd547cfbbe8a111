package payments

import (
	"context"
	"fmt"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// The payments outbox: the events other services must hear of, in the
// shared shape (svc.Event, svc.EventOutbox) that every service's outbox
// has, in the bucket "payments.outbox".
//
// The supporter badge is the users service's to grant, in its own buckets
// and (at stage 10) its own store group, so no transaction spans the
// payment and the grant. What makes the grant certain is that the event
// saying "grant it" commits in the same transaction as the payment's
// success (settle): a success without its event, or an event without its
// success, is never stored. From there the event's path is:
//
//  1. A publisher (pkg/app/events.Publisher over Outbox) reads the outbox
//     oldest first, publishes each event to NATS JetStream with the
//     event's ID as Nats-Msg-Id, and, once JetStream has acknowledged,
//     removes it. Dying anywhere in between means publishing again;
//     JetStream stores a message id once within its duplicate window, so
//     most repeats stop there.
//  2. The users service's consumer applies the event and its id in one
//     transaction (accounts.ApplyBadgeEvent), then acknowledges the
//     message. A repeat that got past JetStream's window, or a redelivery
//     after the consumer died before its ack, finds the id applied and
//     changes nothing.
//
// So an event is delivered at least once and applied at most once: exactly
// once in effect (docs/events.md).

// Source is the service name events of this service carry (svc.Event's
// Source), and the prefix of its buckets.
const Source = "payments"

// EventBadgeGranted is the Type of the event that grants a supporter badge.
const EventBadgeGranted = svc.EventBadgeGranted

// Event is a badge event of the outbox as PendingEvents returns it: the
// shared envelope, and its data decoded.
type Event struct {
	svc.Event
	svc.BadgeGranted
}

// MaxEvents is the most events PendingEvents returns at once.
const MaxEvents = svc.MaxOutboxBatch

// Outbox returns the service's event outbox, for the publisher.
func (s *Service) Outbox() svc.EventOutbox { return svc.OutboxOf(s.st, Source) }

// PendingEvents returns up to limit events not yet marked published,
// oldest first (zero or less, or more than MaxEvents: MaxEvents).
func (s *Service) PendingEvents(ctx context.Context, limit int) ([]Event, error) {
	evs, bad, _, err := s.Outbox().Pending(ctx, "", limit)
	if err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("payments: outbox entry %s is not an event: %w", bad[0], svc.ErrBadEvent)
	}
	out := make([]Event, len(evs))
	for i, ev := range evs {
		out[i].Event = ev
		if err := ev.Decode(&out[i].BadgeGranted); err != nil {
			return nil, fmt.Errorf("payments: %w", err)
		}
	}
	return out, nil
}

// MarkPublished removes the events with ids from the outbox, once the
// transport has acknowledged them. Ids no longer there are ignored, so two
// publishers marking the same event are not an error.
func (s *Service) MarkPublished(ctx context.Context, ids []string) error {
	if err := s.Outbox().Remove(ctx, ids...); err != nil {
		return fmt.Errorf("payments: mark published: %w", err)
	}
	return nil
}
