package accounts_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// A badge event is applied once however often it arrives; a second
// event for a user who holds the badge keeps the first grant.
func TestApplyBadgeEvent(t *testing.T) {
	ctx := context.Background()
	s := accounts.New(apptest.NewMemStore(), bcrypt.MinCost)
	u, err := s.SignUp(ctx, "ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	if _, err := s.Badge(ctx, u.ID); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("Badge before any event = %v, want ErrNotFound", err)
	}
	for i, tt := range []struct {
		event, payment string
		applied        bool
	}{
		{"ev1", "pay1", true},
		{"ev1", "pay1", false}, // redelivered
		{"ev2", "pay2", true},  // another event: applied, the badge kept
		{"ev2", "pay2", false},
	} {
		applied, err := s.ApplyBadgeEvent(ctx, tt.event, u.ID, tt.payment)
		if err != nil || applied != tt.applied {
			t.Errorf("#%d ApplyBadgeEvent(%s) = %v, %v; want %v", i, tt.event, applied, err, tt.applied)
		}
	}
	if b, err := s.Badge(ctx, u.ID); err != nil || b.EventID != "ev1" || b.PaymentID != "pay1" {
		t.Errorf("Badge = %+v, %v; want the grant of ev1", b, err)
	}
	if _, err := s.ApplyBadgeEvent(ctx, "ev3", "nobody", "pay3"); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("ApplyBadgeEvent(unknown user) = %v, want ErrNotFound", err)
	}
}
