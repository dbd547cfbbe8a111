package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// grantFails is a store whose transactions that write a badge fail while
// failing is set, as when the store goes away between a payment's success
// and the grant of its badge.
type grantFails struct {
	*apptest.MemStore
	failing atomic.Bool
}

func (s *grantFails) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	for _, op := range ops {
		if op.Bucket == "accounts.badges" && s.failing.Load() {
			return 0, fmt.Errorf("grant: %w", store.ErrUnavailable)
		}
	}
	return s.MemStore.Txn(ctx, ops...)
}

// A badge whose grant failed after its payment succeeded: the purchase
// answers the grant's error, the event stays in the outbox, and the retry
// with the key grants the badge without a second charge.
func TestLocalPaymentsGrantRetried(t *testing.T) {
	ctx := context.Background()
	st := &grantFails{MemStore: apptest.NewMemStore()}
	users := accounts.New(st, bcrypt.MinCost)
	u, err := users.SignUp(ctx, "bob", "bob@example.com", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	proc := payments.NewSimulated()
	lp := localPayments{Service: payments.New(st, proc), users: users}
	req := payments.BadgeRequest{Key: "badge-1", UserID: u.ID,
		Card: payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "123"}}

	st.failing.Store(true)
	p, err := lp.BuySupporterBadge(ctx, req)
	if !errors.Is(err, store.ErrUnavailable) || p.Status != payments.StatusSucceeded {
		t.Fatalf("BuySupporterBadge with the grant failing = %+v, %v; want the succeeded payment and the store's error", p, err)
	}
	if _, err := users.Badge(ctx, u.ID); !errors.Is(err, svc.ErrNotFound) {
		t.Fatalf("Badge after the failed grant = %v, want svc.ErrNotFound", err)
	}
	if evs, err := lp.PendingEvents(ctx, 0); err != nil || len(evs) != 1 {
		t.Fatalf("outbox after the failed grant = %d events, %v; want the badge's one", len(evs), err)
	}

	st.failing.Store(false)
	again, err := lp.BuySupporterBadge(ctx, req)
	if err != nil || again.ID != p.ID {
		t.Fatalf("the retry with the key = %+v, %v; want payment %s", again, err, p.ID)
	}
	b, err := users.Badge(ctx, u.ID)
	if err != nil || b.PaymentID != p.ID || b.EventID != p.EventID {
		t.Errorf("Badge after the retry = %+v, %v; want the one of payment %s, event %s", b, err, p.ID, p.EventID)
	}
	if evs, err := lp.PendingEvents(ctx, 0); err != nil || len(evs) != 0 {
		t.Errorf("outbox after the retry = %d events, %v; want none", len(evs), err)
	}
	if proc.Charges() != 1 {
		t.Errorf("processor took %d charges, want 1", proc.Charges())
	}
}
