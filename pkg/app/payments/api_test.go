package payments_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
)

// The API over the wire: a charge keyed in the request is one charge
// however often it is sent, a key in the header and another in the request
// are a field error, and each outcome arrives as its error with its status.
func TestAPIOverTheWire(t *testing.T) {
	f := newFixture(t)
	cl, _ := rpctest.Serve(t, rpc.ServerConfig{Service: payments.Name, Instance: "pay-1", Codes: payments.Codes},
		func(srv *rpc.Server) { payments.Register(srv, f.s) })
	ctx := context.Background()
	reader, author := ids.New(), ids.New()

	req := tip(reader, author, 300, payments.CardVisa)
	p1, err := rpc.Call(ctx, cl, payments.TipMethod, req)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := rpc.Call(ctx, cl, payments.TipMethod, req)
	if err != nil || p2.ID != p1.ID {
		t.Fatalf("the same tip again = %+v, %v; want payment %s", p2, err, p1.ID)
	}
	f.wantCharges(t, 1, 300)

	var fe *svc.FieldError
	_, err = rpc.Call(rpc.WithIdempotencyKey(ctx, "other"), cl, payments.TipMethod, req)
	if !errors.As(err, &fe) || fe.Field != "key" {
		t.Fatalf("a header key and another request key = %v, want a field error on key", err)
	}

	for _, tt := range []struct {
		card   string
		want   error
		status int
	}{
		{payments.CardDeclined, payments.ErrDeclined, http.StatusPaymentRequired},
		{payments.CardInsufficientFunds, payments.ErrInsufficientFunds, http.StatusPaymentRequired},
		{payments.CardProcessingError, payments.ErrFailed, http.StatusPaymentRequired},
	} {
		_, err := rpc.Call(ctx, cl, payments.TipMethod, tip(reader, author, 300, tt.card))
		var re *rpc.Error
		if !errors.Is(err, tt.want) || !errors.As(err, &re) || re.Status != tt.status {
			t.Errorf("tip with card %s = %v, want %v under %d", tt.card, err, tt.want, tt.status)
		}
	}
	req.Amount = 400
	if _, err := rpc.Call(ctx, cl, payments.TipMethod, req); !errors.Is(err, payments.ErrKeyReused) {
		t.Errorf("the key again for 400 = %v, want ErrKeyReused", err)
	}
	if got, err := rpc.Call(ctx, cl, payments.PaymentMethod, payments.PaymentRequest{ID: p1.ID}); err != nil || got.ID != p1.ID {
		t.Errorf("payment %s = %+v, %v", p1.ID, got, err)
	}
	if _, err := rpc.Call(ctx, cl, payments.PaymentMethod, payments.PaymentRequest{ID: ids.New()}); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("an unknown payment = %v, want svc.ErrNotFound", err)
	}
	if tot, err := rpc.Call(ctx, cl, payments.TipsForMethod, payments.TipsForRequest{AuthorID: author}); err != nil || tot.Count != 1 || tot.Amount != 300 {
		t.Errorf("tips for the author = %+v, %v; want 1 of 300", tot, err)
	}
	if l, err := rpc.Call(ctx, cl, payments.ForUserMethod, payments.ForUserRequest{UserID: ids.New()}); err != nil || l.Payments == nil || len(l.Payments) != 0 {
		t.Errorf("payments of nobody = %+v, %v; want an empty list", l, err)
	}
}
