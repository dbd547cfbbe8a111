package payments

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

// The payments outbox: the events other services must hear of.
//
// The supporter badge is the users service's to grant, in its own buckets
// and (at stage 10) its own store group, so no transaction spans the
// payment and the grant. What makes the grant certain is that the event
// saying "grant it" commits in the same transaction as the payment's
// success (settle): a success without its event, or an event without its
// success, is never stored. From there the event's path is:
//
//  1. A publisher reads PendingEvents, publishes each to NATS JetStream
//     with the event's ID as Nats-Msg-Id, and, once JetStream has
//     acknowledged, calls MarkPublished. Dying anywhere in between means
//     publishing again; JetStream stores a message id once within its
//     duplicate window, so most repeats stop there.
//  2. The users service's consumer applies the event and its id in one
//     transaction (accounts.ApplyBadgeEvent), then acknowledges the
//     message. A repeat that got past JetStream's window, or a redelivery
//     after the consumer died before its ack, finds the id applied and
//     changes nothing.
//
// So an event is delivered at least once and applied at most once: exactly
// once in effect. The publisher and the transport are stage 10's; this
// package keeps the outbox and the two calls a publisher needs.

// EventBadgeGranted is the Type of the event that grants a supporter badge.
const EventBadgeGranted = "payments.badge_granted"

// Event is one record of the outbox.
type Event struct {
	// ID is unique and time-ordered; the consumer applies each ID once.
	ID   string `json:"id"`
	Type string `json:"type"`
	// UserID is who gets the badge, PaymentID the payment that bought it.
	UserID    string    `json:"user_id"`
	PaymentID string    `json:"payment_id"`
	At        time.Time `json:"at"`
}

// MaxEvents is the most events PendingEvents returns at once.
const MaxEvents = 100

// PendingEvents returns up to limit events not yet marked published,
// oldest first (zero or less, or more than MaxEvents: MaxEvents).
func (s *Service) PendingEvents(ctx context.Context, limit int) ([]Event, error) {
	if limit <= 0 || limit > MaxEvents {
		limit = MaxEvents
	}
	pairs, err := kv.Scan(ctx, s.st, bucketOutbox, store.ScanOptions{Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("payments: read outbox: %w", err)
	}
	out := make([]Event, len(pairs))
	for i, p := range pairs {
		if err := json.Unmarshal(p.Value, &out[i]); err != nil {
			return nil, fmt.Errorf("payments: decode event %s: %w", p.Key, err)
		}
	}
	return out, nil
}

// MarkPublished removes the events with ids from the outbox, once the
// transport has acknowledged them. Ids no longer there are ignored, so two
// publishers marking the same event are not an error.
func (s *Service) MarkPublished(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for chunk := range slices.Chunk(ids, store.MaxTxnOps) {
		ops := make([]store.Op, len(chunk))
		for i, id := range chunk {
			ops[i] = store.Delete(bucketOutbox, id)
		}
		if _, err := s.st.Txn(ctx, ops...); err != nil {
			return fmt.Errorf("payments: mark published: %w", err)
		}
	}
	return nil
}
