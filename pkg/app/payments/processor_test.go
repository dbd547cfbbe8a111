package payments_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// testCard returns number as a valid card: a future expiry, a CVC of the
// right length.
func testCard(number string) payments.Card {
	cvc := "123"
	if payments.Brand(number) == payments.BrandAmex {
		cvc = "1234"
	}
	return payments.Card{Number: number, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: cvc}
}

func TestSimulatedTestCards(t *testing.T) {
	ctx := context.Background()
	p := payments.NewSimulated()
	for i, tt := range []struct {
		number string
		status payments.Status
		code   string
	}{
		{payments.CardVisa, payments.StatusSucceeded, ""},
		{payments.CardMastercard, payments.StatusSucceeded, ""},
		{payments.CardAmex, payments.StatusSucceeded, ""},
		{"6011111111111117", payments.StatusSucceeded, ""}, // not a test card: succeeds
		{payments.CardDeclined, payments.StatusDeclined, "card_declined"},
		{payments.CardInsufficientFunds, payments.StatusDeclined, "insufficient_funds"},
		{payments.CardExpired, payments.StatusDeclined, "expired_card"},
		{payments.CardIncorrectCVC, payments.StatusDeclined, "incorrect_cvc"},
		{payments.CardProcessingError, payments.StatusFailed, "processing_error"},
	} {
		id := "ch" + string(rune('a'+i))
		got, err := p.Charge(ctx, payments.ChargeRequest{ID: id, Amount: 500, Currency: "usd", Card: testCard(tt.number)})
		if err != nil || got.Status != tt.status || got.Code != tt.code || got.ChargeID != id {
			t.Errorf("Charge(%s) = %+v, %v; want %s %q", tt.number, got, err, tt.status, tt.code)
		}
	}
	if got, want := p.Captured(), int64(4*500); got != want {
		t.Errorf("Captured() = %d, want %d (the four that succeeded)", got, want)
	}
}

func TestSimulatedIsIdempotentByID(t *testing.T) {
	ctx := context.Background()
	p := payments.NewSimulated()
	req := payments.ChargeRequest{ID: "ch1", Amount: 700, Currency: "usd", Card: testCard(payments.CardVisa)}
	first, err := p.Charge(ctx, req)
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	again, err := p.Charge(ctx, req)
	if err != nil || again != first {
		t.Errorf("Charge again = %+v, %v; want %+v", again, err, first)
	}
	if p.Charges() != 1 || p.Captured() != 700 {
		t.Errorf("after two charges of one ID: Charges() = %d, Captured() = %d; want 1, 700", p.Charges(), p.Captured())
	}
	other := req
	other.Amount = 800
	var fe *svc.FieldError
	if _, err := p.Charge(ctx, other); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("Charge(same ID, other amount) = %v, want a field error on id", err)
	}
	if got, err := p.Lookup(ctx, "ch1"); err != nil || got != first {
		t.Errorf("Lookup(ch1) = %+v, %v; want %+v", got, err, first)
	}
	if _, err := p.Lookup(ctx, "ch2"); !errors.Is(err, payments.ErrNoCharge) {
		t.Errorf("Lookup(never charged) = %v, want ErrNoCharge", err)
	}
}

func TestSimulatedRefusesBadRequests(t *testing.T) {
	ctx := context.Background()
	p := payments.NewSimulated()
	for _, tt := range []struct {
		req   payments.ChargeRequest
		field string
	}{
		{payments.ChargeRequest{ID: "a", Amount: 49, Currency: "usd", Card: testCard(payments.CardVisa)}, "amount"},
		{payments.ChargeRequest{ID: "a", Amount: payments.MaxCharge + 1, Currency: "usd", Card: testCard(payments.CardVisa)}, "amount"},
		{payments.ChargeRequest{ID: "a", Amount: 500, Currency: "xyz", Card: testCard(payments.CardVisa)}, "currency"},
		{payments.ChargeRequest{Amount: 500, Currency: "usd", Card: testCard(payments.CardVisa)}, "id"},
		{payments.ChargeRequest{ID: "a", Amount: 500, Currency: "usd", Card: testCard("4242424242424241")}, "card.number"},
	} {
		var fe *svc.FieldError
		if _, err := p.Charge(ctx, tt.req); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("Charge(%+v) = %v, want a field error on %s", tt.req, err, tt.field)
		}
	}
	if p.Charges() != 0 {
		t.Errorf("Charges() = %d after refused requests, want 0", p.Charges())
	}
}

// The timeout card is charged, but the answer comes after the caller's
// deadline; Lookup tells the outcome.
func TestSimulatedTimeoutCard(t *testing.T) {
	p := payments.NewSimulated()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := p.Charge(ctx, payments.ChargeRequest{ID: "slow", Amount: 500, Currency: "usd", Card: testCard(payments.CardTimeout)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Charge(timeout card) = %v, want the caller's deadline", err)
	}
	got, err := p.Lookup(context.Background(), "slow")
	if err != nil || got.Status != payments.StatusSucceeded {
		t.Errorf("Lookup(slow) = %+v, %v; want succeeded", got, err)
	}
	if p.Charges() != 1 || p.Captured() != 500 {
		t.Errorf("Charges() = %d, Captured() = %d; want 1, 500", p.Charges(), p.Captured())
	}
	// With no deadline, the answer comes after LateAnswer.
	p.LateAnswer = time.Millisecond
	got, err = p.Charge(context.Background(), payments.ChargeRequest{ID: "slow2", Amount: 500, Currency: "usd", Card: testCard(payments.CardTimeout)})
	if err != nil || got.Status != payments.StatusSucceeded {
		t.Errorf("Charge(timeout card, no deadline) = %+v, %v; want succeeded, late", got, err)
	}
}
