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

// casTries bounds the retries of a compare-and-set under contention.
const casTries = 40

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
	for range casTries {
		ops := []store.Op{store.IfAbsent(bucketEvents, eventID), store.Put(bucketEvents, eventID, []byte(userID))}
		_, err := s.Badge(ctx, userID)
		switch {
		case err == nil:
			// Held already: only note the event as applied.
		case errors.Is(err, svc.ErrNotFound):
			b := Badge{UserID: userID, PaymentID: paymentID, EventID: eventID, GrantedAt: time.Now().UTC().Truncate(time.Second)}
			ops = append(ops, store.IfAbsent(bucketBadges, userID), store.Put(bucketBadges, userID, kv.MustJSON(b)))
		default:
			return false, err
		}
		_, err = s.st.Txn(ctx, ops...)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrConditionFailed) {
			return false, fmt.Errorf("accounts: apply badge event: %w", err)
		}
		if _, err := s.st.Get(ctx, bucketEvents, eventID); err == nil {
			return false, nil
		}
		// The badge was granted under us by another event: go again.
	}
	return false, fmt.Errorf("accounts: apply badge event %s: %w", eventID, svc.ErrConflict)
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
