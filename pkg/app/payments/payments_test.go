package payments_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// testStore is a real database with two faults a test can turn on: it
// can be down, and it records every value written.
type testStore struct {
	store.Store
	down atomic.Bool

	mu     sync.Mutex
	values [][]byte
}

func (s *testStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if s.down.Load() {
		return nil, store.ErrUnavailable
	}
	return s.Store.Get(ctx, bucket, key)
}

func (s *testStore) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	if s.down.Load() {
		return nil, store.ErrUnavailable
	}
	return s.Store.Scan(ctx, bucket, opts)
}

func (s *testStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	if s.down.Load() {
		return 0, store.ErrUnavailable
	}
	s.mu.Lock()
	for _, op := range ops {
		s.values = append(s.values, append([]byte(op.Key+"="), op.Value...))
	}
	s.mu.Unlock()
	return s.Store.Txn(ctx, ops...)
}

func newStore(tb testing.TB) *testStore {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return &testStore{Store: db}
}

// fixture is a payments service over a real store, with its processor.
type fixture struct {
	st   *testStore
	proc *payments.Simulated
	s    *payments.Service
}

func newFixture(tb testing.TB) fixture {
	tb.Helper()
	st, proc := newStore(tb), payments.NewSimulated()
	return fixture{st: st, proc: proc, s: payments.New(st, proc)}
}

func (f fixture) wantCharges(tb testing.TB, charges int, captured int64) {
	tb.Helper()
	if got, gotCaptured := f.proc.Charges(), f.proc.Captured(); got != charges || gotCaptured != captured {
		tb.Errorf("processor: %d charges, %d cents captured; want %d, %d", got, gotCaptured, charges, captured)
	}
}

func (f fixture) wantEvents(tb testing.TB, n int) []payments.Event {
	tb.Helper()
	evs, err := f.s.PendingEvents(context.Background(), 0)
	if err != nil || len(evs) != n {
		tb.Fatalf("PendingEvents = %d events, %v; want %d", len(evs), err, n)
	}
	return evs
}

func tip(from, to string, amount int64, number string) payments.TipRequest {
	return payments.TipRequest{Key: "tip-" + ids.New(), FromUserID: from, ToAuthorID: to, Amount: amount, Card: testCard(number)}
}

func TestTipSucceeds(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reader, author, post := ids.New(), ids.New(), ids.New()
	req := tip(reader, author, 300, "4242 4242 4242 4242")
	req.PostID = post
	p, err := f.s.Tip(ctx, req)
	if err != nil {
		t.Fatalf("Tip: %v", err)
	}
	want := payments.CardSummary{Brand: payments.BrandVisa, Last4: "4242", ExpMonth: 12, ExpYear: time.Now().Year() + 2}
	if p.Status != payments.StatusSucceeded || p.Amount != 300 || p.AuthorID != author || p.PostID != post || p.Card != want {
		t.Errorf("Tip = %+v, want a succeeded tip of 300 to the author with card %+v", p, want)
	}
	if got, err := f.s.Payment(ctx, p.ID); err != nil || got.ID != p.ID || got.Status != payments.StatusSucceeded {
		t.Errorf("Payment(%s) = %+v, %v; want it succeeded", p.ID, got, err)
	}
	if _, err := f.s.Payment(ctx, ids.New()); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("Payment(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := f.s.Tip(ctx, tip(reader, author, 200, payments.CardMastercard)); err != nil {
		t.Fatalf("second Tip: %v", err)
	}
	if got, err := f.s.TipsFor(ctx, author); err != nil || got.Count != 2 || got.Amount != 500 || got.Currency != "usd" {
		t.Errorf("TipsFor = %+v, %v; want 2 tips, 500 usd", got, err)
	}
	list, err := f.s.ForUser(ctx, reader, 10)
	if err != nil || len(list) != 2 || list[1].ID != p.ID || list[0].Amount != 200 {
		t.Errorf("ForUser = %+v, %v; want the two tips, newest first", list, err)
	}
	if list, err := f.s.ForUser(ctx, reader[:5], 0); err != nil || len(list) != 0 {
		t.Errorf("ForUser(a prefix of the payer's id) = %d payments, %v; want none", len(list), err)
	}
	f.wantCharges(t, 2, 500)
	f.wantEvents(t, 0)
}

func TestTipNotPaid(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reader, author := ids.New(), ids.New()
	for _, tt := range []struct {
		number string
		err    error
		status payments.Status
		code   string
	}{
		{payments.CardDeclined, payments.ErrDeclined, payments.StatusDeclined, "card_declined"},
		{payments.CardInsufficientFunds, payments.ErrDeclined, payments.StatusDeclined, "insufficient_funds"},
		{payments.CardExpired, payments.ErrDeclined, payments.StatusDeclined, "expired_card"},
		{payments.CardIncorrectCVC, payments.ErrDeclined, payments.StatusDeclined, "incorrect_cvc"},
		{payments.CardProcessingError, payments.ErrFailed, payments.StatusFailed, "processing_error"},
	} {
		p, err := f.s.Tip(ctx, tip(reader, author, 300, tt.number))
		if !errors.Is(err, tt.err) || p.Status != tt.status || p.Code != tt.code || p.Message == "" {
			t.Errorf("Tip with %s = %+v, %v; want %v, %s %q and a message", tt.number, p, err, tt.err, tt.status, tt.code)
		}
		if got, _ := f.s.Payment(ctx, p.ID); got.Status != tt.status {
			t.Errorf("Payment(%s).Status = %s, want %s recorded", p.ID, got.Status, tt.status)
		}
	}
	if got, err := f.s.TipsFor(ctx, author); err != nil || got.Count != 0 || got.Amount != 0 {
		t.Errorf("TipsFor after tips that were not paid = %+v, %v; want none", got, err)
	}
	f.wantCharges(t, 5, 0)
}

// Bad input is refused before anything is recorded or charged.
func TestTipInvalid(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reader, author := ids.New(), ids.New()
	ok := tip(reader, author, 300, payments.CardVisa)
	for _, tt := range []struct {
		name  string
		edit  func(*payments.TipRequest)
		field string
	}{
		{"no key", func(r *payments.TipRequest) { r.Key = "" }, "key"},
		{"long key", func(r *payments.TipRequest) { r.Key = strings.Repeat("k", payments.MaxKey+1) }, "key"},
		{"key with a newline", func(r *payments.TipRequest) { r.Key = "a\nb" }, "key"},
		{"no payer", func(r *payments.TipRequest) { r.FromUserID = "" }, "user_id"},
		{"bad author", func(r *payments.TipRequest) { r.ToAuthorID = "x/y" }, "to_author_id"},
		{"tip yourself", func(r *payments.TipRequest) { r.ToAuthorID = reader }, "to_author_id"},
		{"bad post", func(r *payments.TipRequest) { r.PostID = "nope" }, "post_id"},
		{"too little", func(r *payments.TipRequest) { r.Amount = payments.MinTip - 1 }, "amount"},
		{"too much", func(r *payments.TipRequest) { r.Amount = payments.MaxTip + 1 }, "amount"},
		{"luhn", func(r *payments.TipRequest) { r.Card.Number = "4242424242424241" }, "card.number"},
		{"expired", func(r *payments.TipRequest) { r.Card.ExpYear = time.Now().Year() - 1 }, "card.exp_year"},
		{"month", func(r *payments.TipRequest) { r.Card.ExpMonth = 13 }, "card.exp_month"},
		{"cvc", func(r *payments.TipRequest) { r.Card.CVC = "1" }, "card.cvc"},
	} {
		req := ok
		tt.edit(&req)
		var fe *svc.FieldError
		if _, err := f.s.Tip(ctx, req); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s: Tip = %v, want a field error on %s", tt.name, err, tt.field)
		}
	}
	if list, err := f.s.ForUser(ctx, reader, 0); err != nil || len(list) != 0 {
		t.Errorf("ForUser after refused tips = %d payments, %v; want none", len(list), err)
	}
	f.wantCharges(t, 0, 0)
}

// A retry with the same key answers as the first call, charging once;
// the same key with another request is refused; keys are the payer's.
func TestRetrySameKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	reader, author := ids.New(), ids.New()
	req := tip(reader, author, 300, payments.CardVisa)
	first, err := f.s.Tip(ctx, req)
	if err != nil {
		t.Fatalf("Tip: %v", err)
	}
	for range 3 {
		req.Card.Number = "4242-4242-4242-4242" // typed differently, the same card
		again, err := f.s.Tip(ctx, req)
		if err != nil || again != first {
			t.Errorf("Tip again = %+v, %v; want %+v", again, err, first)
		}
	}
	f.wantCharges(t, 1, 300)

	declined := tip(reader, author, 300, payments.CardDeclined)
	p1, err1 := f.s.Tip(ctx, declined)
	p2, err2 := f.s.Tip(ctx, declined)
	if !errors.Is(err1, payments.ErrDeclined) || !errors.Is(err2, payments.ErrDeclined) || p1 != p2 {
		t.Errorf("declined tip twice = (%+v, %v), (%+v, %v); want the same decline", p1, err1, p2, err2)
	}
	f.wantCharges(t, 2, 300)

	for name, edit := range map[string]func(*payments.TipRequest){
		"amount": func(r *payments.TipRequest) { r.Amount = 400 },
		"author": func(r *payments.TipRequest) { r.ToAuthorID = ids.New() },
		"card":   func(r *payments.TipRequest) { r.Card = testCard(payments.CardMastercard) },
	} {
		other := req
		edit(&other)
		_, err := f.s.Tip(ctx, other)
		if !errors.Is(err, payments.ErrKeyReused) || !errors.Is(err, svc.ErrConflict) || !strings.Contains(err.Error(), name) {
			t.Errorf("Tip(same key, other %s) = %v, want ErrKeyReused naming the %s", name, err, name)
		}
	}
	// Another payer's key of the same name is another payment.
	other := req
	other.FromUserID = ids.New()
	if p, err := f.s.Tip(ctx, other); err != nil || p.ID == first.ID {
		t.Errorf("Tip(another payer, same key) = %+v, %v; want a new payment", p, err)
	}
	f.wantCharges(t, 3, 600)
}

// The processor takes the charge but answers after the deadline: the
// outcome is unknown, and the retry learns it without charging again.
func TestTimeoutThenRetry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.s.ChargeTimeout = 20 * time.Millisecond
	req := tip(ids.New(), ids.New(), 300, payments.CardTimeout)
	p, err := f.s.Tip(ctx, req)
	if !errors.Is(err, payments.ErrOutcomeUnknown) || p.Status != payments.StatusPending {
		t.Fatalf("Tip(timeout card) = %+v, %v; want a pending payment, ErrOutcomeUnknown", p, err)
	}
	if got, _ := f.s.Payment(ctx, p.ID); got.Status != payments.StatusPending {
		t.Errorf("Payment.Status = %s before the retry, want pending", got.Status)
	}
	f.wantCharges(t, 1, 300)
	again, err := f.s.Tip(ctx, req)
	if err != nil || again.ID != p.ID || again.Status != payments.StatusSucceeded {
		t.Fatalf("retry = %+v, %v; want payment %s succeeded", again, err, p.ID)
	}
	if got, err := f.s.TipsFor(ctx, req.ToAuthorID); err != nil || got.Count != 1 || got.Amount != 300 {
		t.Errorf("TipsFor = %+v, %v; want one tip of 300", got, err)
	}
	f.wantCharges(t, 1, 300)
}

// Concurrent retries of one key make one payment and one charge, and
// all answer alike.
func TestConcurrentRetries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	user := ids.New()
	tipReq := tip(user, ids.New(), 300, payments.CardVisa)
	badgeReq := payments.BadgeRequest{Key: "badge-1", UserID: user, Card: testCard(payments.CardVisa)}
	const n = 8
	var wg sync.WaitGroup
	tips, badges := make([]payments.Payment, n), make([]payments.Payment, n)
	errs := make([]error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			tips[i], errs[i] = f.s.Tip(ctx, tipReq)
		}()
		go func() {
			defer wg.Done()
			badges[i], errs[n+i] = f.s.BuySupporterBadge(ctx, badgeReq)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || errs[n+i] != nil || tips[i].ID != tips[0].ID || badges[i].ID != badges[0].ID ||
			tips[i].Status != payments.StatusSucceeded || badges[i].Status != payments.StatusSucceeded {
			t.Errorf("call %d: tip %+v, %v; badge %+v, %v; want both succeeded, the same payments as call 0", i, tips[i], errs[i], badges[i], errs[n+i])
		}
	}
	f.wantCharges(t, 2, 300+payments.BadgePrice)
	f.wantEvents(t, 1)
	if list, _ := f.s.ForUser(ctx, user, 0); len(list) != 2 {
		t.Errorf("ForUser = %d payments, want 2", len(list))
	}
}

// A badge payment writes one event, however often it is retried; a user
// buys the badge once; a badge declined can be bought again.
func TestBadge(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	user := ids.New()
	declined, err := f.s.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "k1", UserID: user, Card: testCard(payments.CardInsufficientFunds)})
	if !errors.Is(err, payments.ErrDeclined) || declined.EventID != "" {
		t.Fatalf("BuySupporterBadge(insufficient funds) = %+v, %v; want declined, no event", declined, err)
	}
	f.wantEvents(t, 0)
	req := payments.BadgeRequest{Key: "k2", UserID: user, Card: testCard(payments.CardAmex)}
	p, err := f.s.BuySupporterBadge(ctx, req)
	if err != nil || p.Status != payments.StatusSucceeded || p.Amount != payments.BadgePrice || p.EventID == "" {
		t.Fatalf("BuySupporterBadge = %+v, %v; want succeeded at the badge price with an event", p, err)
	}
	for range 3 {
		if again, err := f.s.BuySupporterBadge(ctx, req); err != nil || again != p {
			t.Errorf("BuySupporterBadge again = %+v, %v; want %+v", again, err, p)
		}
	}
	evs := f.wantEvents(t, 1)
	if ev := evs[0]; ev.ID != p.EventID || ev.Type != payments.EventBadgeGranted || ev.UserID != user || ev.PaymentID != p.ID {
		t.Errorf("event = %+v, want the badge of payment %s for %s", ev, p.ID, user)
	}
	if _, err := f.s.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "k3", UserID: user, Card: testCard(payments.CardVisa)}); !errors.Is(err, svc.ErrExists) {
		t.Errorf("BuySupporterBadge(new key, badge held) = %v, want ErrExists", err)
	}
	if err := f.s.MarkPublished(ctx, []string{p.EventID, "gone"}); err != nil {
		t.Fatalf("MarkPublished: %v", err)
	}
	f.wantEvents(t, 0)
	if _, err := f.s.BuySupporterBadge(ctx, req); err != nil {
		t.Fatalf("BuySupporterBadge after publish: %v", err)
	}
	f.wantEvents(t, 0)
	f.wantCharges(t, 2, payments.BadgePrice)
}

// While a badge payment's outcome is unknown, another purchase with
// another key is refused, so the two cannot both charge.
func TestBadgeInProgress(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.s.ChargeTimeout = 20 * time.Millisecond
	user := ids.New()
	slow := payments.BadgeRequest{Key: "slow", UserID: user, Card: testCard(payments.CardTimeout)}
	if _, err := f.s.BuySupporterBadge(ctx, slow); !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("BuySupporterBadge(timeout card) = %v, want ErrOutcomeUnknown", err)
	}
	other := payments.BadgeRequest{Key: "other", UserID: user, Card: testCard(payments.CardVisa)}
	if _, err := f.s.BuySupporterBadge(ctx, other); !errors.Is(err, payments.ErrInProgress) {
		t.Errorf("BuySupporterBadge(another key) = %v, want ErrInProgress", err)
	}
	if p, err := f.s.BuySupporterBadge(ctx, slow); err != nil || p.Status != payments.StatusSucceeded {
		t.Errorf("retry of the slow one = %+v, %v; want succeeded", p, err)
	}
	f.wantCharges(t, 1, payments.BadgePrice)
	f.wantEvents(t, 1)
}

// crashingProcessor charges, then the service loses its store before it
// can record the answer: what a crash of the service between the charge
// and its record leaves behind.
type crashingProcessor struct {
	payments.Processor
	st *testStore
}

func (p crashingProcessor) Charge(ctx context.Context, req payments.ChargeRequest) (payments.Result, error) {
	res, err := p.Processor.Charge(ctx, req)
	p.st.down.Store(true)
	return res, err
}

// The service dies between the processor's success and recording it; a
// retry, by a service started afresh, learns the outcome from the
// processor: one charge, one event, and the users service grants one badge
// however often the event is delivered.
func TestCrashAfterChargeThenRetry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	users := accounts.New(f.st, bcrypt.MinCost)
	u, err := users.SignUp(ctx, "ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	req := payments.BadgeRequest{Key: "badge", UserID: u.ID, Card: testCard(payments.CardVisa)}
	crashing := payments.New(f.st, crashingProcessor{Processor: f.proc, st: f.st})
	if p, err := crashing.BuySupporterBadge(ctx, req); err == nil {
		t.Fatalf("BuySupporterBadge with the store lost after the charge = %+v, want an error", p)
	}
	f.st.down.Store(false)
	f.wantCharges(t, 1, payments.BadgePrice)
	f.wantEvents(t, 0)

	restarted := payments.New(f.st, f.proc)
	p, err := restarted.BuySupporterBadge(ctx, req)
	if err != nil || p.Status != payments.StatusSucceeded {
		t.Fatalf("retry = %+v, %v; want succeeded", p, err)
	}
	f.wantCharges(t, 1, payments.BadgePrice)
	ev := f.wantEvents(t, 1)[0]

	// The consumer: the event delivered twice grants one badge.
	for i, want := range []bool{true, false} {
		applied, err := users.ApplyBadgeEvent(ctx, ev.ID, ev.UserID, ev.PaymentID)
		if err != nil || applied != want {
			t.Errorf("ApplyBadgeEvent #%d = %v, %v; want %v", i+1, applied, err, want)
		}
	}
	b, err := users.Badge(ctx, u.ID)
	if err != nil || b.EventID != ev.ID || b.PaymentID != p.ID {
		t.Errorf("Badge = %+v, %v; want granted by event %s for payment %s", b, err, ev.ID, p.ID)
	}
}

// What is stored of a card is its brand, last 4 and expiry: never the
// number, never the CVC.
func TestCardNumberNotStored(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	user := ids.New()
	card := payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "987"}
	if _, err := f.s.Tip(ctx, payments.TipRequest{Key: "t", FromUserID: user, ToAuthorID: ids.New(), Amount: 300, Card: card}); err != nil {
		t.Fatalf("Tip: %v", err)
	}
	if _, err := f.s.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "b", UserID: user, Card: card}); err != nil {
		t.Fatalf("BuySupporterBadge: %v", err)
	}
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	for _, v := range f.st.values {
		if s := string(v); strings.Contains(s, payments.CardVisa[:12]) || strings.Contains(s, "cvc") || strings.Contains(s, `"987"`) {
			t.Errorf("stored %s: holds card data past brand, last 4 and expiry", s)
		}
	}
	if len(f.st.values) == 0 {
		t.Fatal("no values recorded")
	}
}

func ExampleService_Tip() {
	ctx := context.Background()
	proc := payments.NewSimulated()
	s := payments.New(apptest.NewMemStore(), proc)
	req := payments.TipRequest{
		Key:        "tip-2026-06-15-1", // the same on every retry of this tip
		FromUserID: ids.New(), ToAuthorID: ids.New(), Amount: 300,
		Card: payments.Card{Number: "4242 4242 4242 4242", ExpMonth: 12, ExpYear: time.Now().Year() + 1, CVC: "123"},
	}
	p, err := s.Tip(ctx, req)
	fmt.Println(p.Status, p.Card.Brand, p.Card.Last4, err)
	p, err = s.Tip(ctx, req) // a retry: the same payment, no second charge
	fmt.Println(p.Status, proc.Charges(), err)
	// Output:
	// succeeded visa 4242 <nil>
	// succeeded 1 <nil>
}

// A payment nobody retries is settled by the sweep, from what the
// processor knows: the badge of a charge taken is not lost.
func TestSettlePending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.s.ChargeTimeout = 20 * time.Millisecond
	p, err := f.s.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "slow", UserID: ids.New(), Card: testCard(payments.CardTimeout)})
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("BuySupporterBadge(timeout card) = %v, want ErrOutcomeUnknown", err)
	}
	if n, err := f.s.SettlePending(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("SettlePending(an hour) = %d, %v; want 0: the payment is younger", n, err)
	}
	if n, err := f.s.SettlePending(ctx, 0); err != nil || n != 1 {
		t.Errorf("SettlePending(0) = %d, %v; want 1", n, err)
	}
	if got, _ := f.s.Payment(ctx, p.ID); got.Status != payments.StatusSucceeded || got.EventID == "" {
		t.Errorf("Payment after the sweep = %+v, want succeeded with its event", got)
	}
	f.wantEvents(t, 1)
	if n, err := f.s.SettlePending(ctx, 0); err != nil || n != 0 {
		t.Errorf("SettlePending again = %d, %v; want 0", n, err)
	}
	f.wantCharges(t, 1, payments.BadgePrice)
}

// unreachableProcessor loses the charge before it reaches the processor.
type unreachableProcessor struct{ payments.Processor }

func (unreachableProcessor) Charge(context.Context, payments.ChargeRequest) (payments.Result, error) {
	return payments.Result{}, errors.New("connection refused")
}

// A charge that never reached the processor leaves the payment pending;
// the sweep leaves it so, and the retry charges it, once.
func TestChargeLostBeforeTheProcessor(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	req := tip(ids.New(), ids.New(), 300, payments.CardVisa)
	lost := payments.New(f.st, unreachableProcessor{f.proc})
	p, err := lost.Tip(ctx, req)
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("Tip through an unreachable processor = %v, want ErrOutcomeUnknown", err)
	}
	if n, err := f.s.SettlePending(ctx, 0); err != nil || n != 0 {
		t.Errorf("SettlePending = %d, %v; want 0: the processor has no charge", n, err)
	}
	f.wantCharges(t, 0, 0)
	again, err := f.s.Tip(ctx, req)
	if err != nil || again.ID != p.ID || again.Status != payments.StatusSucceeded {
		t.Errorf("retry = %+v, %v; want payment %s succeeded", again, err, p.ID)
	}
	f.wantCharges(t, 1, 300)
}

// refusingProcessor refuses every charge as malformed; with charged set,
// it has taken the charge under the id before (an earlier attempt whose
// answer was lost) and refuses this one.
type refusingProcessor struct {
	payments.Processor
	charged bool
}

func (p refusingProcessor) Charge(ctx context.Context, req payments.ChargeRequest) (payments.Result, error) {
	if p.charged {
		if _, err := p.Processor.Charge(ctx, req); err != nil {
			return payments.Result{}, err
		}
	}
	return payments.Result{}, svc.Invalid("id", "charge %s was made with other parameters", req.ID)
}

// A charge the processor refuses as malformed fails the payment, unless
// the processor holds a charge under its id from an earlier attempt.
func TestProcessorRefusal(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p, err := payments.New(f.st, refusingProcessor{Processor: f.proc}).Tip(ctx, tip(ids.New(), ids.New(), 300, payments.CardVisa))
	if !errors.Is(err, payments.ErrFailed) || p.Code != "invalid_request" {
		t.Errorf("Tip refused by the processor = %+v, %v; want failed, invalid_request", p, err)
	}
	f.wantCharges(t, 0, 0)
	p, err = payments.New(f.st, refusingProcessor{Processor: f.proc, charged: true}).Tip(ctx, tip(ids.New(), ids.New(), 300, payments.CardVisa))
	if err != nil || p.Status != payments.StatusSucceeded {
		t.Errorf("Tip refused after an earlier charge under its id = %+v, %v; want succeeded", p, err)
	}
	f.wantCharges(t, 1, 300)
}
