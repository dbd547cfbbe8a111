package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The supporter badge, granted by an event of the payments service
// (pkg/app/payments, events.go). Events arrive at least once; applying one
// records its id in the same transaction as the grant, so a repeat changes
// nothing: each event is applied once.
//
// bucketEvents keeps every applied id: a repeat can come from an outbox
// publish that JetStream's duplicate window no longer remembers, so there
// is no age past which an id may be forgotten without a bound on the
// publisher's retries.
const (
	bucketBadges = "accounts.badges" // user id -> Badge
	bucketEvents = "accounts.events" // applied event id -> user id
)

// Badge is a user's supporter badge.
type Badge struct {
	UserID string `json:"user_id"`
	// PaymentID and EventID are the payment that bought it and the event
	// that granted it.
	PaymentID string    `json:"payment_id"`
	EventID   string    `json:"event_id"`
	GrantedAt time.Time `json:"granted_at"`
}

// ApplyBadgeEvent grants userID the supporter badge bought by paymentID,
// as the event eventID says. It is idempotent by eventID: applied reports
// whether this call applied it, false when it had been already. A user who
// holds the badge keeps the first grant. Errors: svc.ErrNotFound for an
// unknown user.
func (s *Service) ApplyBadgeEvent(ctx context.Context, eventID, userID, paymentID string) (applied bool, err error) {
	if eventID == "" {
		return false, fmt.Errorf("accounts: badge event without an id")
	}
	if _, err := s.User(ctx, userID); err != nil {
		return false, err
	}
	applied, err = svc.ApplyOnce(ctx, s.st, bucketEvents, eventID, []byte(userID), func(ctx context.Context) ([]store.Op, error) {
		_, err := s.Badge(ctx, userID)
		switch {
		case err == nil:
			return nil, nil // held already: only note the event as applied
		case errors.Is(err, svc.ErrNotFound):
			b := Badge{UserID: userID, PaymentID: paymentID, EventID: eventID, GrantedAt: time.Now().UTC().Truncate(time.Second)}
			// The condition fails if another event grants it under us:
			// ApplyOnce goes again, and finds it held.
			return []store.Op{store.IfAbsent(bucketBadges, userID), store.Put(bucketBadges, userID, kv.MustJSON(b))}, nil
		default:
			return nil, err
		}
	})
	if err != nil {
		return false, fmt.Errorf("accounts: apply badge event: %w", err)
	}
	return applied, nil
}

// HandleBadgeGranted applies an svc.EventBadgeGranted delivered by the
// transport (ApplyBadgeEvent). An event that is not one, or whose data
// does not decode, matches svc.ErrBadEvent; every other error is worth a
// retry, an unknown user included (the user may not be readable yet on
// the replica read).
func (s *Service) HandleBadgeGranted(ctx context.Context, ev svc.Event) error {
	if ev.Type != svc.EventBadgeGranted {
		return fmt.Errorf("accounts: %w: %s %s is not a %s", svc.ErrBadEvent, ev.Type, ev.ID, svc.EventBadgeGranted)
	}
	var d svc.BadgeGranted
	if err := ev.Decode(&d); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	_, err := s.ApplyBadgeEvent(ctx, ev.ID, d.UserID, d.PaymentID)
	return err
}

// Badge returns userID's supporter badge, or svc.ErrNotFound when the user
// has none.
func (s *Service) Badge(ctx context.Context, userID string) (Badge, error) {
	var b Badge
	if _, err := kv.GetJSON(ctx, s.st, bucketBadges, userID, &b); err != nil {
		return Badge{}, notFound("badge", err)
	}
	return b, nil
}
