// Package payments is the blog's payments service: readers tip an author
// or buy a supporter badge, paid to a card Processor (the Simulated one
// inside the service until a real one is plugged in). It owns the buckets
// whose names start with "payments."; no other service reads them, so at
// stage 10 it runs as its own node over its own store group.
//
// Three rules make a payment safe to retry, over a network that loses
// answers and a service that may die between any two steps:
//
//   - A payment is recorded (pending) before the processor is called, under
//     the payer's idempotency key, and the processor is called with the
//     payment's id as its own idempotency key. So however often a request
//     is retried, and whichever attempt gets through, the card is charged
//     once.
//   - A retry with the same key and the same request answers as the first
//     attempt did. When the first attempt's outcome is unknown (the
//     processor did not answer in time, or the service died before
//     recording the answer), the retry asks the processor (Lookup) and
//     records what it says; a sweep (SettlePending, settle.go) does the
//     same for the payments nobody retries.
//   - The badge is granted by the users service (pkg/app/accounts), told by
//     an event that commits in the same store transaction as the payment's
//     success (the outbox, events.go): it cannot be lost, and the users
//     service applies each event id once.
//
// docs/payments.md has the test cards and the event's path.
package payments

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Buckets owned by the service. Payment ids are time-ordered, so a scan of
// a user's index is in payment order, newest last.
const (
	bucketPayments = "payments.byid"    // payment id -> record
	bucketKeys     = "payments.keys"    // payer id/idempotency key -> payment id
	bucketByUser   = "payments.byuser"  // payer id/payment id -> ""
	bucketTips     = "payments.tips"    // author id/payment id -> amount (succeeded tips)
	bucketBadges   = "payments.badges"  // user id -> id of the user's latest badge payment
	bucketPending  = "payments.pending" // payment id -> "" while the payment is pending
	// The outbox, "payments.outbox" (event id -> svc.Event, until
	// published), is svc.OutboxOf(st, Source).
)

// Prices and limits, in cents of Currency.
const (
	// Currency is the one the service charges in.
	Currency = "usd"
	// BadgePrice is the fixed price of the supporter badge.
	BadgePrice = 500
	// MinTip is the processor's smallest charge; MaxTip keeps a mistyped
	// amount from becoming a large charge.
	MinTip = MinCharge
	MaxTip = 50_000
	// MaxKey is the longest idempotency key, in bytes (Stripe's limit).
	MaxKey = 255
	// MaxList is the most payments ForUser returns.
	MaxList = 100
)

// DefaultChargeTimeout bounds one call to the processor when
// Service.ChargeTimeout is zero.
const DefaultChargeTimeout = 10 * time.Second

// casTries bounds the retries of a compare-and-set under contention.
const casTries = 40

// Kind is what a payment pays for.
type Kind string

const (
	KindTip   Kind = "tip"
	KindBadge Kind = "badge"
)

// Sentinel errors, tested with errors.Is. The error of a payment that did
// not succeed comes with the Payment itself, which says more (Status, Code).
var (
	// ErrDeclined: the card's issuer refused the charge; Payment.Code says why.
	ErrDeclined = errors.New("card declined")
	// ErrInsufficientFunds: declined for want of funds (Payment.Code
	// "insufficient_funds"). It matches ErrDeclined.
	ErrInsufficientFunds = fmt.Errorf("%w: insufficient_funds", ErrDeclined)
	// ErrFailed: the processor could not charge; nothing was taken.
	ErrFailed = errors.New("payment failed")
	// ErrOutcomeUnknown: the payment is recorded but whether the card was
	// charged is not known yet. Retry with the same idempotency key: the
	// retry finds out, and never charges twice.
	ErrOutcomeUnknown = errors.New("payment outcome unknown; retry with the same idempotency key")
	// ErrKeyReused: the idempotency key was used for another request. It
	// matches svc.ErrConflict.
	ErrKeyReused = fmt.Errorf("idempotency key already used for another request: %w", svc.ErrConflict)
	// ErrInProgress: another badge payment of this user has not settled
	// yet; retry that one with its key. It matches svc.ErrConflict.
	ErrInProgress = fmt.Errorf("another payment is in progress: %w", svc.ErrConflict)
)

// Payment is one payment, as kept and as shown to its payer.
type Payment struct {
	ID   string `json:"id"`
	Kind Kind   `json:"kind"`
	// UserID is the payer.
	UserID string `json:"user_id"`
	// AuthorID and PostID are a tip's recipient and the post it was left on
	// (PostID may be empty).
	AuthorID string      `json:"author_id,omitempty"`
	PostID   string      `json:"post_id,omitempty"`
	Amount   int64       `json:"amount"`
	Currency string      `json:"currency"`
	Card     CardSummary `json:"card"`
	Status   Status      `json:"status"`
	// Code and Message say why a payment was declined or failed.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// EventID is the badge event a succeeded badge payment wrote.
	EventID   string    `json:"event_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// record is what the store holds.
type record struct {
	Payment
	// Key is the payer's idempotency key.
	Key string `json:"key"`
}

// TipRequest is the input of Tip.
type TipRequest struct {
	// Key is the idempotency key the client chose for this tip (a UUID,
	// say), scoped to the payer: every retry of the tip carries the same
	// one. Required (over the API, here or as the Idempotency-Key header).
	Key        string `json:"key,omitempty"`
	FromUserID string `json:"from_user_id"`
	ToAuthorID string `json:"to_author_id"`
	// PostID, optional, is the post the tip was left on.
	PostID string `json:"post_id,omitempty"`
	// Amount in cents, MinTip to MaxTip.
	Amount int64 `json:"amount"`
	Card   Card  `json:"card"`
}

// BadgeRequest is the input of BuySupporterBadge.
type BadgeRequest struct {
	// Key is the idempotency key, as in TipRequest. Required.
	Key    string `json:"key,omitempty"`
	UserID string `json:"user_id"`
	Card   Card   `json:"card"`
}

// TipTotals sums the succeeded tips an author received.
type TipTotals struct {
	AuthorID string `json:"author_id"`
	Count    int    `json:"count"`
	// Amount in cents of Currency.
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Service implements the payments service over a store and a processor.
type Service struct {
	st   store.Store
	proc Processor

	// ChargeTimeout bounds each call to the processor, so that a processor
	// that does not answer leaves the payment pending (ErrOutcomeUnknown)
	// rather than holding the request. Zero: DefaultChargeTimeout.
	ChargeTimeout time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// EventsCommitted, if not nil, is called (without waiting on it) after
	// a transaction that wrote an event into the outbox has committed: the
	// node sets it to its events publisher's Nudge, so the event leaves at
	// once. Nil: the publisher's sweep finds the event.
	EventsCommitted func()
}

// New returns the service.
func New(st store.Store, proc Processor) *Service {
	return &Service{st: st, proc: proc}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Tip pays req.Amount from req.FromUserID to req.ToAuthorID. It returns the
// payment with a nil error when it succeeded; when it did not, the payment
// and an error matching ErrDeclined, ErrFailed or ErrOutcomeUnknown. Bad
// input is a *svc.FieldError, a key used for another request ErrKeyReused.
// A retry with the same key answers as the first call, charging once.
func (s *Service) Tip(ctx context.Context, req TipRequest) (Payment, error) {
	p := Payment{Kind: KindTip, UserID: req.FromUserID, AuthorID: req.ToAuthorID, PostID: req.PostID, Amount: req.Amount, Currency: Currency}
	switch {
	case !ids.Valid(req.ToAuthorID):
		return Payment{}, svc.Invalid("to_author_id", "is not a user id")
	case req.ToAuthorID == req.FromUserID:
		return Payment{}, svc.Invalid("to_author_id", "you cannot tip yourself")
	case req.PostID != "" && !ids.Valid(req.PostID):
		return Payment{}, svc.Invalid("post_id", "is not a post id")
	case req.Amount < MinTip || req.Amount > MaxTip:
		return Payment{}, svc.Invalid("amount", "must be %d to %d cents", MinTip, MaxTip)
	}
	return s.pay(ctx, p, req.Key, req.Card)
}

// BuySupporterBadge charges BadgePrice to req.UserID for the supporter
// badge; on success it writes the event that makes the users service grant
// it. It answers as Tip does, and with an error matching svc.ErrExists when
// the user has bought the badge already, ErrInProgress when another badge
// payment of the user is still pending.
func (s *Service) BuySupporterBadge(ctx context.Context, req BadgeRequest) (Payment, error) {
	p := Payment{Kind: KindBadge, UserID: req.UserID, Amount: BadgePrice, Currency: Currency}
	return s.pay(ctx, p, req.Key, req.Card)
}

// pay runs a payment p, whose kind-specific fields are checked, under key.
func (s *Service) pay(ctx context.Context, p Payment, key string, card Card) (Payment, error) {
	if err := validKey(key); err != nil {
		return Payment{}, err
	}
	if !ids.Valid(p.UserID) {
		return Payment{}, svc.Invalid("user_id", "is not a user id")
	}
	card, sum, err := CheckCard(card, s.now())
	if err != nil {
		return Payment{}, err
	}
	p.Card = sum
	for range casTries {
		rec, raw, err := s.byKey(ctx, p.UserID, key)
		if err == nil {
			return s.retry(ctx, rec, raw, p, card)
		}
		if !errors.Is(err, svc.ErrNotFound) {
			return Payment{}, err
		}
		rec, raw, err = s.create(ctx, p, key)
		if errors.Is(err, store.ErrConditionFailed) {
			continue // a concurrent attempt with the key, or at the badge: look again
		}
		if err != nil {
			return Payment{}, err
		}
		return s.charge(ctx, rec, raw, card)
	}
	return Payment{}, fmt.Errorf("payments: key %q: %w", key, svc.ErrConflict)
}

func validKey(key string) error {
	switch {
	case key == "":
		return svc.Invalid("key", "is required: an idempotency key, the same on every retry of this payment")
	case len(key) > MaxKey:
		return svc.Invalid("key", "must be at most %d bytes", MaxKey)
	case strings.ContainsFunc(key, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsPrint(r) }):
		return svc.Invalid("key", "must be printable ASCII")
	}
	return nil
}

// create records p as a new pending payment under key. The condition that
// the key is free (and, for a badge, that the user's badge claim is as
// read) fails as store.ErrConditionFailed when a concurrent call got there
// first.
func (s *Service) create(ctx context.Context, p Payment, key string) (record, []byte, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	p.ID, p.Status, p.CreatedAt, p.UpdatedAt = ids.At(now), StatusPending, now, now
	rec := record{Payment: p, Key: key}
	raw := kv.MustJSON(rec)
	ops := []store.Op{
		store.IfAbsent(bucketKeys, kv.Join(p.UserID, key)),
		store.Put(bucketKeys, kv.Join(p.UserID, key), []byte(p.ID)),
		store.Put(bucketPayments, p.ID, raw),
		store.Put(bucketByUser, kv.Join(p.UserID, p.ID), nil),
		store.Put(bucketPending, p.ID, nil),
	}
	if p.Kind == KindBadge {
		claim, err := s.badgeClaim(ctx, p.UserID, key)
		if err != nil {
			return record{}, nil, err
		}
		ops = append(ops, claim, store.Put(bucketBadges, p.UserID, []byte(p.ID)))
	}
	if _, err := s.st.Txn(ctx, ops...); err != nil {
		return record{}, nil, fmt.Errorf("payments: record payment: %w", err)
	}
	return rec, raw, nil
}

// badgeClaim returns the condition under which a new badge payment of
// userID may go ahead: one badge per user, and one badge payment at a time,
// so that two purchases with different keys cannot both charge. A claim
// left by a declined or failed payment is taken over. A claim made with
// key itself, by a concurrent call that got there after this call read the
// key, is store.ErrConditionFailed: the caller looks the key up again.
func (s *Service) badgeClaim(ctx context.Context, userID, key string) (store.Op, error) {
	id, err := s.st.Get(ctx, bucketBadges, userID)
	if errors.Is(err, store.ErrNotFound) {
		return store.IfAbsent(bucketBadges, userID), nil
	}
	if err != nil {
		return store.Op{}, fmt.Errorf("payments: read badge: %w", err)
	}
	prev, _, err := s.load(ctx, string(id))
	if err != nil {
		return store.Op{}, err
	}
	if prev.Key == key {
		return store.Op{}, fmt.Errorf("payments: badge claimed with key %q meanwhile: %w", key, store.ErrConditionFailed)
	}
	switch prev.Status {
	case StatusSucceeded:
		return store.Op{}, &svc.FieldError{Field: "user_id", Msg: "already has the supporter badge", Err: svc.ErrExists}
	case StatusPending:
		return store.Op{}, fmt.Errorf("payments: badge payment %s has not settled; retry it with its idempotency key: %w", prev.ID, ErrInProgress)
	}
	return store.IfEqual(bucketBadges, userID, id), nil
}

// retry answers a call whose key already names rec: as rec's first call
// did when the request is the same and rec is settled, by settling it when
// it is pending.
func (s *Service) retry(ctx context.Context, rec record, raw []byte, p Payment, card Card) (Payment, error) {
	if field := differs(rec.Payment, p); field != "" {
		return Payment{}, fmt.Errorf("payments: key %q was used for payment %s, whose %s differs: %w", rec.Key, rec.ID, field, ErrKeyReused)
	}
	if rec.Status != StatusPending {
		return answer(rec.Payment)
	}
	// The first attempt's outcome is unknown: the processor did not answer
	// it in time, or its caller died before recording the answer, or it is
	// still running. Ask the processor; charge only if it never saw the
	// charge, with the same id, so a racing first attempt is the same charge.
	res, err := s.lookup(ctx, rec.ID)
	if errors.Is(err, ErrNoCharge) {
		return s.charge(ctx, rec, raw, card)
	}
	if err != nil {
		return s.unknown(ctx, rec, err)
	}
	return s.settle(ctx, rec, raw, res)
}

// differs names the first field in which p, a retry's request, differs
// from the first request of the key, or "" when it is the same request.
// The card is compared by what is kept of it: brand, last 4 and expiry.
func differs(first, p Payment) string {
	switch {
	case first.Kind != p.Kind:
		return "kind"
	case first.AuthorID != p.AuthorID:
		return "author"
	case first.PostID != p.PostID:
		return "post"
	case first.Amount != p.Amount:
		return "amount"
	case first.Currency != p.Currency:
		return "currency"
	case first.Card != p.Card:
		return "card"
	}
	return ""
}

func (s *Service) lookup(ctx context.Context, id string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.chargeTimeout())
	defer cancel()
	return s.proc.Lookup(ctx, id)
}

func (s *Service) chargeTimeout() time.Duration {
	if s.ChargeTimeout > 0 {
		return s.ChargeTimeout
	}
	return DefaultChargeTimeout
}

// charge asks the processor to charge the pending payment rec and records
// the answer.
func (s *Service) charge(ctx context.Context, rec record, raw []byte, card Card) (Payment, error) {
	cctx, cancel := context.WithTimeout(ctx, s.chargeTimeout())
	res, err := s.proc.Charge(cctx, ChargeRequest{ID: rec.ID, Amount: rec.Amount, Currency: rec.Currency, Card: card})
	cancel()
	var fe *svc.FieldError
	if errors.As(err, &fe) {
		// Refused as malformed, and a retry would be refused alike. This
		// call charged nothing; an earlier one with the id may have, so the
		// payment fails only if the processor has no charge under it.
		res, err := s.lookup(ctx, rec.ID)
		if errors.Is(err, ErrNoCharge) {
			res, err = Result{ChargeID: rec.ID, Status: StatusFailed, Code: "invalid_request", Message: fe.Error()}, nil
		}
		if err != nil {
			return s.unknown(ctx, rec, err)
		}
		return s.settle(ctx, rec, raw, res)
	}
	if err != nil {
		return s.unknown(ctx, rec, err)
	}
	return s.settle(ctx, rec, raw, res)
}

// unknown answers a call that could not learn rec's outcome, unless a
// concurrent call has recorded it meanwhile.
func (s *Service) unknown(ctx context.Context, rec record, cause error) (Payment, error) {
	if cur, _, err := s.load(context.WithoutCancel(ctx), rec.ID); err == nil && cur.Status != StatusPending {
		return answer(cur.Payment)
	}
	return rec.Payment, fmt.Errorf("payments: payment %s: %w (%v)", rec.ID, ErrOutcomeUnknown, cause)
}

// settle records the processor's answer res for the pending payment rec,
// whose stored value is raw. The transaction is conditional on the payment
// still being pending, so of several calls settling one payment only one
// writes, and what a success causes (a tip's total, the badge's event)
// commits with it exactly once.
//
// It is recorded even if the caller has gone: the money has moved.
func (s *Service) settle(ctx context.Context, rec record, raw []byte, res Result) (Payment, error) {
	switch res.Status {
	case StatusSucceeded, StatusDeclined, StatusFailed:
	default:
		return s.unknown(ctx, rec, fmt.Errorf("the processor answered status %q", res.Status))
	}
	ctx = context.WithoutCancel(ctx)
	done := rec
	done.Status, done.Code, done.Message = res.Status, res.Code, res.Message
	done.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	var ops []store.Op
	if res.Status == StatusSucceeded {
		switch done.Kind {
		case KindTip:
			ops = append(ops, store.Put(bucketTips, kv.Join(done.AuthorID, done.ID), []byte(strconv.FormatInt(done.Amount, 10))))
		case KindBadge:
			ev := svc.NewEvent(Source, EventBadgeGranted, done.UpdatedAt, svc.BadgeGranted{UserID: done.UserID, PaymentID: done.ID})
			done.EventID = ev.ID
			ops = append(ops, s.Outbox().Put(ev))
		}
	}
	ops = append(ops, store.IfEqual(bucketPayments, rec.ID, raw), store.Put(bucketPayments, rec.ID, kv.MustJSON(done)),
		store.Delete(bucketPending, rec.ID))
	_, err := s.st.Txn(ctx, ops...)
	if errors.Is(err, store.ErrConditionFailed) {
		// Another call settled it first; answer as it recorded.
		cur, _, err := s.load(ctx, rec.ID)
		if err != nil {
			return rec.Payment, err
		}
		return answer(cur.Payment)
	}
	if err != nil {
		return rec.Payment, fmt.Errorf("payments: payment %s is %s at the processor but could not be recorded; retry with the same idempotency key: %w", rec.ID, res.Status, err)
	}
	if done.EventID != "" && s.EventsCommitted != nil {
		s.EventsCommitted()
	}
	return answer(done.Payment)
}

// answer returns p with the error its status calls for.
func answer(p Payment) (Payment, error) {
	switch p.Status {
	case StatusSucceeded:
		return p, nil
	case StatusDeclined:
		if p.Code == "insufficient_funds" {
			return p, fmt.Errorf("payment %s: %w", p.ID, ErrInsufficientFunds)
		}
		return p, fmt.Errorf("payment %s: %w: %s", p.ID, ErrDeclined, p.Code)
	case StatusFailed:
		return p, fmt.Errorf("payment %s: %w: %s", p.ID, ErrFailed, p.Code)
	}
	return p, fmt.Errorf("payment %s: %w", p.ID, ErrOutcomeUnknown)
}

// byKey returns the payment that userID's key names, or svc.ErrNotFound.
func (s *Service) byKey(ctx context.Context, userID, key string) (record, []byte, error) {
	id, err := s.st.Get(ctx, bucketKeys, kv.Join(userID, key))
	if errors.Is(err, store.ErrNotFound) {
		return record{}, nil, fmt.Errorf("key %q: %w", key, svc.ErrNotFound)
	}
	if err != nil {
		return record{}, nil, fmt.Errorf("payments: read key: %w", err)
	}
	return s.load(ctx, string(id))
}

func (s *Service) load(ctx context.Context, id string) (record, []byte, error) {
	if !ids.Valid(id) {
		return record{}, nil, fmt.Errorf("payment %q: %w", id, svc.ErrNotFound)
	}
	var rec record
	raw, err := kv.GetJSON(ctx, s.st, bucketPayments, id, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return record{}, nil, fmt.Errorf("payment %q: %w", id, svc.ErrNotFound)
	}
	if err != nil {
		return record{}, nil, fmt.Errorf("payments: read payment: %w", err)
	}
	return rec, raw, nil
}

// Payment returns the payment with id, or svc.ErrNotFound.
func (s *Service) Payment(ctx context.Context, id string) (Payment, error) {
	rec, _, err := s.load(ctx, id)
	return rec.Payment, err
}

// PaymentByKey returns the payment that userID's idempotency key names, or
// svc.ErrNotFound. Over the wire an unsuccessful charge arrives as its
// error alone; the client reads the payment (its Code: card_declined,
// incorrect_cvc, ...) with this.
func (s *Service) PaymentByKey(ctx context.Context, userID, key string) (Payment, error) {
	if !ids.Valid(userID) || validKey(key) != nil {
		return Payment{}, fmt.Errorf("key %q: %w", key, svc.ErrNotFound)
	}
	rec, _, err := s.byKey(ctx, userID, key)
	return rec.Payment, err
}

// ForUser returns up to limit of userID's payments, newest first; limit
// is capped at MaxList (zero or less: MaxList).
func (s *Service) ForUser(ctx context.Context, userID string, limit int) ([]Payment, error) {
	if limit <= 0 || limit > MaxList {
		limit = MaxList
	}
	if !ids.Valid(userID) {
		return nil, nil // no payment has such a payer; and no prefix of another's key
	}
	pairs, _, err := kv.Page(ctx, s.st, bucketByUser, userID+"/", 0, limit, true)
	if err != nil {
		return nil, fmt.Errorf("payments: list %s: %w", userID, err)
	}
	out := make([]Payment, 0, len(pairs))
	for _, pair := range pairs {
		p, err := s.Payment(ctx, strings.TrimPrefix(pair.Key, userID+"/"))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// TipsFor sums the succeeded tips authorID received. It reads one index
// entry per tip; an author with very many would want a running total.
func (s *Service) TipsFor(ctx context.Context, authorID string) (TipTotals, error) {
	t := TipTotals{AuthorID: authorID, Currency: Currency}
	if !ids.Valid(authorID) {
		return t, nil
	}
	pairs, err := kv.All(ctx, s.st, bucketTips, authorID+"/")
	if err != nil {
		return TipTotals{}, fmt.Errorf("payments: tips of %s: %w", authorID, err)
	}
	for _, p := range pairs {
		n, err := strconv.ParseInt(string(p.Value), 10, 64)
		if err != nil {
			return TipTotals{}, fmt.Errorf("payments: tip %s: %w", p.Key, err)
		}
		t.Count++
		t.Amount += n
	}
	return t, nil
}
