package payments_test

import (
	"context"
	"errors"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
)

// newClient serves f's service on a real rpc server and returns a Client
// of it.
func newClient(tb testing.TB, f fixture) *payments.Client {
	tb.Helper()
	cl, _ := rpctest.Serve(tb, rpc.ServerConfig{Service: payments.Name, Instance: "pay-1", Codes: payments.Codes},
		func(srv *rpc.Server) { payments.Register(srv, f.s) })
	return payments.NewClient(cl)
}

// The Client answers as the Service does in-process: a retried tip is one
// charge and the same payment, a decline comes with its payment (and the
// issuer's code), a key reused is ErrKeyReused, a second badge is
// svc.ErrExists, and the reads round-trip.
func TestClientRoundTrips(t *testing.T) {
	f := newFixture(t)
	cl := newClient(t, f)
	ctx := context.Background()
	reader, author, post := ids.New(), ids.New(), ids.New()

	req := tip(reader, author, 300, payments.CardVisa)
	req.PostID = post
	p1, err := cl.Tip(ctx, req)
	if err != nil || p1.Status != payments.StatusSucceeded || p1.PostID != post {
		t.Fatalf("Tip = %+v, %v; want succeeded on post %s", p1, err, post)
	}
	p2, err := cl.Tip(ctx, req)
	if err != nil || p2.ID != p1.ID {
		t.Fatalf("Tip again with key %q = %+v, %v; want payment %s", req.Key, p2, err, p1.ID)
	}
	f.wantCharges(t, 1, 300)

	declined := tip(reader, author, 300, payments.CardIncorrectCVC)
	p, err := cl.Tip(ctx, declined)
	if !errors.Is(err, payments.ErrDeclined) || p.Code != "incorrect_cvc" || p.Status != payments.StatusDeclined || p.ID == "" {
		t.Errorf("Tip with the incorrect CVC card = %+v, %v; want the declined payment with code incorrect_cvc", p, err)
	}
	if _, err := cl.Tip(ctx, payments.TipRequest{Key: req.Key, FromUserID: reader, ToAuthorID: author, PostID: post,
		Amount: 400, Card: req.Card}); !errors.Is(err, payments.ErrKeyReused) {
		t.Errorf("Tip of 400 with the key of a tip of 300 = %v, want ErrKeyReused", err)
	}

	badge := payments.BadgeRequest{Key: "badge-1", UserID: reader, Card: testCard(payments.CardVisa)}
	b, err := cl.BuySupporterBadge(ctx, badge)
	if err != nil || b.Kind != payments.KindBadge || b.EventID == "" {
		t.Fatalf("BuySupporterBadge = %+v, %v; want a succeeded badge payment with its event", b, err)
	}
	badge.Key = "badge-2"
	if _, err := cl.BuySupporterBadge(ctx, badge); !errors.Is(err, svc.ErrExists) {
		t.Errorf("a second badge = %v, want svc.ErrExists", err)
	}

	if got, err := cl.Payment(ctx, p1.ID); err != nil || got.ID != p1.ID {
		t.Errorf("Payment(%s) = %+v, %v", p1.ID, got, err)
	}
	if got, err := cl.PaymentByKey(ctx, reader, req.Key); err != nil || got.ID != p1.ID {
		t.Errorf("PaymentByKey(%q) = %+v, %v; want payment %s", req.Key, got, err, p1.ID)
	}
	if _, err := cl.PaymentByKey(ctx, author, req.Key); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("PaymentByKey of another payer = %v, want svc.ErrNotFound (keys are the payer's)", err)
	}
	list, err := cl.ForUser(ctx, reader, 0)
	if err != nil || len(list) != 3 || list[0].ID != b.ID {
		t.Errorf("ForUser = %d payments (first %+v), %v; want 3, the badge first", len(list), list, err)
	}
	if tot, err := cl.TipsFor(ctx, author); err != nil || tot.Count != 1 || tot.Amount != 300 {
		t.Errorf("TipsFor = %+v, %v; want 1 tip of 300", tot, err)
	}
}
