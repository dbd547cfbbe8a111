package payments

import (
	"context"
	"errors"

	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// Client is the payments service seen from another process (the gateway)
// over the services' wire: the methods of Service that the app calls, each
// one rpc.Call of this package's Method values, answering as the service
// in-process does. Its rpc.Client must be built with Codes, so that the
// service's own errors (ErrDeclined, ErrKeyReused, ...) match across the hop.
//
// A charge carries its idempotency key in the request (TipRequest.Key,
// BadgeRequest.Key), which TipMethod and BadgeMethod send as the
// Idempotency-Key header: the rpc client may then retry the call on another
// instance, and the service charges once however many attempts arrive.
type Client struct {
	c *rpc.Client
}

// NewClient returns the payments service over c.
func NewClient(c *rpc.Client) *Client { return &Client{c: c} }

// Tip is Service.Tip over the wire.
func (cl *Client) Tip(ctx context.Context, req TipRequest) (Payment, error) {
	p, err := rpc.Call(ctx, cl.c, TipMethod, req)
	return cl.outcome(ctx, req.FromUserID, req.Key, p, err)
}

// BuySupporterBadge is Service.BuySupporterBadge over the wire.
func (cl *Client) BuySupporterBadge(ctx context.Context, req BadgeRequest) (Payment, error) {
	p, err := rpc.Call(ctx, cl.c, BadgeMethod, req)
	return cl.outcome(ctx, req.UserID, req.Key, p, err)
}

// outcome completes the answer of a charge. In-process, a charge that did
// not succeed returns its payment beside the error, and the payment says
// why (Code: card_declined, incorrect_cvc, ...); the wire's error body
// holds only the error, so the payment is read back by its key. If that
// read fails, the error alone is returned, as it stands on its own.
func (cl *Client) outcome(ctx context.Context, userID, key string, p Payment, err error) (Payment, error) {
	if err == nil || key == "" {
		return p, err
	}
	if !errors.Is(err, ErrDeclined) && !errors.Is(err, ErrFailed) && !errors.Is(err, ErrOutcomeUnknown) {
		return p, err
	}
	// The charge's answer is known to the service: read it even if the
	// caller is leaving (the rpc client's own timeout bounds the read).
	got, rerr := cl.PaymentByKey(context.WithoutCancel(ctx), userID, key)
	if rerr != nil {
		return p, err
	}
	return got, err
}

// PaymentByKey is Service.PaymentByKey over the wire.
func (cl *Client) PaymentByKey(ctx context.Context, userID, key string) (Payment, error) {
	return rpc.Call(ctx, cl.c, PaymentByKeyMethod, PaymentByKeyRequest{UserID: userID, Key: key})
}

// Payment is Service.Payment over the wire.
func (cl *Client) Payment(ctx context.Context, id string) (Payment, error) {
	return rpc.Call(ctx, cl.c, PaymentMethod, PaymentRequest{ID: id})
}

// ForUser is Service.ForUser over the wire.
func (cl *Client) ForUser(ctx context.Context, userID string, limit int) ([]Payment, error) {
	l, err := rpc.Call(ctx, cl.c, ForUserMethod, ForUserRequest{UserID: userID, Limit: limit})
	return l.Payments, err
}

// TipsFor is Service.TipsFor over the wire.
func (cl *Client) TipsFor(ctx context.Context, authorID string) (TipTotals, error) {
	return rpc.Call(ctx, cl.c, TipsForMethod, TipsForRequest{AuthorID: authorID})
}
