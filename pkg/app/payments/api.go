package payments

import (
	"context"
	"net/http"

	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// The payments API over the services' wire (pkg/app/svc/rpc,
// docs/services.md): each method declared once, for the payments node
// (Register) and its callers (rpc.Call with these values), and the
// service's own error codes, which both sides give their rpc config
// (Codes). docs/api.md, "Payments service (stage 10)", has the JSON and the
// statuses.
//
// The charges (Tip, BuySupporterBadge) are not idempotent, but keyed: the
// payer's key is in the request (Key) or in the Idempotency-Key header, and
// a retry with it charges once. Their Method.Key makes the rpc client send
// the request's key as the header, and so retry them like reads.

// Name is the service's name on the wire: /v1/payments/{method}.
const Name = Source

// The methods.
var (
	// TipMethod is Service.Tip.
	TipMethod = rpc.Method[TipRequest, Payment]{Name: "tip", Key: func(r TipRequest) string { return r.Key }}
	// BadgeMethod is Service.BuySupporterBadge.
	BadgeMethod = rpc.Method[BadgeRequest, Payment]{Name: "buy-supporter-badge", Key: func(r BadgeRequest) string { return r.Key }}
	// PaymentMethod is Service.Payment.
	PaymentMethod = rpc.Method[PaymentRequest, Payment]{Name: "payment", Idempotent: true}
	// PaymentByKeyMethod is Service.PaymentByKey.
	PaymentByKeyMethod = rpc.Method[PaymentByKeyRequest, Payment]{Name: "payment-by-key", Idempotent: true}
	// ForUserMethod is Service.ForUser.
	ForUserMethod = rpc.Method[ForUserRequest, PaymentList]{Name: "for-user", Idempotent: true}
	// TipsForMethod is Service.TipsFor.
	TipsForMethod = rpc.Method[TipsForRequest, TipTotals]{Name: "tips-for", Idempotent: true}
)

// PaymentRequest asks for one payment.
type PaymentRequest struct {
	ID string `json:"id"`
}

// PaymentByKeyRequest asks for the payment a payer's idempotency key names.
type PaymentByKeyRequest struct {
	UserID string `json:"user_id"`
	Key    string `json:"key"`
}

// ForUserRequest asks for a payer's payments, newest first.
type ForUserRequest struct {
	UserID string `json:"user_id"`
	// Limit is 1 to MaxList; zero: MaxList.
	Limit int `json:"limit,omitempty"`
}

// PaymentList is ForUser's answer.
type PaymentList struct {
	Payments []Payment `json:"payments"`
}

// TipsForRequest asks for an author's tip totals.
type TipsForRequest struct {
	AuthorID string `json:"author_id"`
}

// Codes are the service's own errors on the wire, tried before the wire's
// table. A declined or failed payment is 402 (Stripe's "request failed":
// the request was valid, the charge was not made), not a 5xx: it is the
// card's answer, and must not count against the instance's breaker. The
// outcome unknown is 503, as a store's unavailability is: the instance is
// fine, its processor did not answer in time, and a retry with the same key
// finds out.
var Codes = []rpc.Code{
	{Name: "insufficient_funds", Status: http.StatusPaymentRequired, Err: ErrInsufficientFunds},
	{Name: "declined", Status: http.StatusPaymentRequired, Err: ErrDeclined},
	{Name: "payment_failed", Status: http.StatusPaymentRequired, Err: ErrFailed},
	{Name: "key_reused", Status: http.StatusConflict, Err: ErrKeyReused},
	{Name: "in_progress", Status: http.StatusConflict, Err: ErrInProgress},
	{Name: "payment_outcome_unknown", Status: http.StatusServiceUnavailable, Err: ErrOutcomeUnknown},
}

// Register serves s's methods on server (whose ServerConfig.Codes must be
// Codes).
func Register(server *rpc.Server, s *Service) {
	rpc.Handle(server, TipMethod, func(ctx context.Context, req TipRequest) (Payment, error) {
		key, err := callKey(ctx, req.Key)
		if err != nil {
			return Payment{}, err
		}
		req.Key = key
		return s.Tip(ctx, req)
	})
	rpc.Handle(server, BadgeMethod, func(ctx context.Context, req BadgeRequest) (Payment, error) {
		key, err := callKey(ctx, req.Key)
		if err != nil {
			return Payment{}, err
		}
		req.Key = key
		return s.BuySupporterBadge(ctx, req)
	})
	rpc.Handle(server, PaymentMethod, func(ctx context.Context, req PaymentRequest) (Payment, error) {
		return s.Payment(ctx, req.ID)
	})
	rpc.Handle(server, PaymentByKeyMethod, func(ctx context.Context, req PaymentByKeyRequest) (Payment, error) {
		return s.PaymentByKey(ctx, req.UserID, req.Key)
	})
	rpc.Handle(server, ForUserMethod, func(ctx context.Context, req ForUserRequest) (PaymentList, error) {
		ps, err := s.ForUser(ctx, req.UserID, req.Limit)
		if ps == nil {
			ps = []Payment{}
		}
		return PaymentList{Payments: ps}, err
	})
	rpc.Handle(server, TipsForMethod, func(ctx context.Context, req TipsForRequest) (TipTotals, error) {
		return s.TipsFor(ctx, req.AuthorID)
	})
}

// callKey is a charge's idempotency key: the request's Key, or the
// Idempotency-Key header; both may be given only when they agree.
func callKey(ctx context.Context, body string) (string, error) {
	header := rpc.IdempotencyKey(ctx)
	switch {
	case body == "":
		return header, nil
	case header != "" && header != body:
		return "", svc.Invalid("key", "differs from the Idempotency-Key header: give one or the other")
	}
	return body, nil
}
