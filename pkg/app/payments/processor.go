package payments

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Processor is the card processor the service charges: a payment network
// seen through its API (Stripe's, say), or the Simulated one inside the
// service. It is declared here, where it is used, as the small part of such
// an API the service needs.
//
// Its contract is the one real processors keep with idempotency keys:
// Charge with an ID already charged does not charge again and answers as
// the first time, whatever became of the first call; and Lookup answers
// for a charge whose outcome its caller never heard.
type Processor interface {
	// Charge charges req.Card. A nil error means the processor answered:
	// the Result says succeeded, declined or failed. An error means the
	// outcome is unknown (no answer in time, a broken connection): the
	// charge may or may not have been taken, and Lookup(req.ID) tells.
	// The one exception is a *svc.FieldError: the processor refused the
	// request as malformed and charged nothing.
	Charge(ctx context.Context, req ChargeRequest) (Result, error)
	// Lookup returns the outcome of the charge with id, or ErrNoCharge
	// when the processor never took one with that id. Any other error
	// leaves the outcome unknown.
	Lookup(ctx context.Context, id string) (Result, error)
}

// ChargeRequest is one charge.
type ChargeRequest struct {
	// ID is the charge's idempotency key at the processor: the service
	// uses the payment's id, so every attempt at one payment is one charge.
	ID string
	// Amount is in the currency's minor unit (cents).
	Amount int64
	// Currency is a lower-case ISO 4217 code ("usd").
	Currency string
	Card     Card
}

// Status is where a payment or a charge stands.
type Status string

const (
	// StatusPending: recorded, and the processor's answer not known yet.
	// Only a payment is ever pending; a charge's Result never is.
	StatusPending Status = "pending"
	// StatusSucceeded: the money was taken.
	StatusSucceeded Status = "succeeded"
	// StatusDeclined: the card's issuer refused (Result.Code says why).
	StatusDeclined Status = "declined"
	// StatusFailed: the processor could not charge for a reason not the
	// card's (its own error); nothing was taken.
	StatusFailed Status = "failed"
)

// Result is the processor's answer about one charge.
type Result struct {
	ChargeID string `json:"charge_id"`
	Status   Status `json:"status"`
	// Code is a machine-readable reason for a decline or a failure, as
	// Stripe names them (card_declined, insufficient_funds, ...).
	Code string `json:"code,omitempty"`
	// Message is the reason for a person to read.
	Message string `json:"message,omitempty"`
}

// Amount limits of a charge at the processor, in cents (Stripe's).
const (
	MinCharge = 50
	MaxCharge = 99_999_999
)

// Currencies the processor charges in.
var currencies = []string{"usd", "eur", "gbp"}

// ErrNoCharge: the processor has no charge with this id; it never took it.
var ErrNoCharge = errors.New("no such charge")

// Test cards of the Simulated processor, in the style of Stripe's: any
// future expiry, any CVC of the right length. Numbers not listed here that
// pass the checks succeed. docs/payments.md has the same table.
const (
	CardVisa              = "4242424242424242" // succeeds
	CardMastercard        = "5555555555554444" // succeeds
	CardAmex              = "378282246310005"  // succeeds (4-digit CVC)
	CardDeclined          = "4000000000000002" // declined: card_declined
	CardInsufficientFunds = "4000000000009995" // declined: insufficient_funds
	CardExpired           = "4000000000000069" // declined: expired_card
	CardIncorrectCVC      = "4000000000000127" // declined: incorrect_cvc
	CardProcessingError   = "4000000000000119" // failed: processing_error
	// CardTimeout is taken (the charge succeeds) but the answer comes
	// after the caller's deadline: the caller cannot know the outcome
	// until it asks Lookup. Ours, not Stripe's (408: request timeout).
	CardTimeout = "4000000000000408"
)

// testCards maps a test card to the answer it gets.
var testCards = map[string]Result{
	CardDeclined:          {Status: StatusDeclined, Code: "card_declined", Message: "Your card was declined."},
	CardInsufficientFunds: {Status: StatusDeclined, Code: "insufficient_funds", Message: "Your card has insufficient funds."},
	CardExpired:           {Status: StatusDeclined, Code: "expired_card", Message: "Your card has expired."},
	CardIncorrectCVC:      {Status: StatusDeclined, Code: "incorrect_cvc", Message: "Your card's security code is incorrect."},
	CardProcessingError:   {Status: StatusFailed, Code: "processing_error", Message: "An error occurred while processing your card. Try again in a little bit."},
}

// DefaultLateAnswer is how long the Simulated processor takes to answer
// for CardTimeout when the caller set no deadline.
const DefaultLateAnswer = 30 * time.Second

// Simulated is a card processor inside the service, for tests, the
// stages and `node load`: it validates like a real one, answers the test
// cards as documented, and is idempotent by charge ID. It is safe for
// concurrent use.
type Simulated struct {
	// Now is the clock the card's expiry is checked against. Nil: time.Now.
	Now func() time.Time
	// LateAnswer is how long a CardTimeout charge takes to answer when
	// the caller's context has no deadline. Zero: DefaultLateAnswer.
	LateAnswer time.Duration

	mu      sync.Mutex
	charges map[string]*charge
	// captured is the sum of the amounts of succeeded charges.
	captured int64
}

// charge is what the processor keeps of one charge.
type charge struct {
	req    ChargeRequest // Card holds only the last 4 digits
	result Result
}

// NewSimulated returns a processor with no charges.
func NewSimulated() *Simulated {
	return &Simulated{charges: map[string]*charge{}}
}

// Charge implements Processor.
func (p *Simulated) Charge(ctx context.Context, req ChargeRequest) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("simulated processor: %w", err)
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	card, _, err := CheckCard(req.Card, now())
	if err != nil {
		return Result{}, err
	}
	switch {
	case req.ID == "":
		return Result{}, svc.Invalid("id", "is required")
	case req.Amount < MinCharge || req.Amount > MaxCharge:
		return Result{}, svc.Invalid("amount", "must be %d to %d cents", MinCharge, MaxCharge)
	case !slices.Contains(currencies, req.Currency):
		return Result{}, svc.Invalid("currency", "must be one of %v", currencies)
	}
	req.Card = Card{Number: card.Number[len(card.Number)-4:], ExpMonth: card.ExpMonth, ExpYear: card.ExpYear}

	p.mu.Lock()
	c, seen := p.charges[req.ID]
	if !seen {
		c = &charge{req: req, result: cardResult(card.Number)}
		c.result.ChargeID = req.ID
		p.charges[req.ID] = c
		if c.result.Status == StatusSucceeded {
			p.captured += req.Amount
		}
	}
	p.mu.Unlock()
	if seen {
		// A replay: the same answer, or a refusal when the key comes
		// with another request, as Stripe does.
		if c.req != req {
			return Result{}, svc.Invalid("id", "charge %s was made with other parameters", req.ID)
		}
		return c.result, nil
	}
	if card.Number == CardTimeout {
		late := p.LateAnswer
		if late <= 0 {
			late = DefaultLateAnswer
		}
		t := time.NewTimer(late)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("simulated processor: charge %s taken, answer late: %w", req.ID, ctx.Err())
		case <-t.C:
		}
	}
	return c.result, nil
}

// cardResult is the result a charge to number gets.
func cardResult(number string) Result {
	if r, ok := testCards[number]; ok {
		return r
	}
	return Result{Status: StatusSucceeded}
}

// Lookup implements Processor.
func (p *Simulated) Lookup(ctx context.Context, id string) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("simulated processor: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.charges[id]
	if !ok {
		return Result{}, fmt.Errorf("charge %s: %w", id, ErrNoCharge)
	}
	return c.result, nil
}

// Charges returns how many distinct charges the processor has taken,
// whatever their outcome: one per charge ID, however often it was asked.
func (p *Simulated) Charges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.charges)
}

// Captured returns the money taken by succeeded charges, in cents.
func (p *Simulated) Captured() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.captured
}
