package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Tips: the payments service's operation. A person whose tip was answered
// "outcome unknown" (or not answered at all) does what docs/api.md tells
// them: retries with the same Idempotency-Key, which must never charge
// twice. Each user does so on their next arrival; the run's end retries
// what is still pending, and every tip a retry settled is looked up in the
// user's payments, where a second succeeded payment of it is a double
// charge.

// tipAttempt is one tip: its key and the request sent again, unchanged, on
// every retry (another amount or post with the same key is refused as
// key_reused).
type tipAttempt struct {
	key    string
	postID string
	amount int64 // cents, distinct among a user's tips: what finds it in their payments
	// unknown counts the answers that left its outcome unknown.
	unknown int
	// endTries counts the retries at the run's end.
	endTries int
}

// tipCard is a test card that succeeds (docs/payments.md, Test cards),
// valid for a few years from now.
func tipCard() map[string]any {
	return map[string]any{"number": "4242424242424242", "exp_month": 12, "exp_year": time.Now().Year() + 3, "cvc": "123"}
}

// tipAmounts is the spread of tip amounts: 50 (the least a tip may be)
// to 1049 cents, one per tip of a user in turn.
const tipAmounts = 1000

// paymentJSON is the part of a payment the generator reads.
type paymentJSON struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	PostID string `json:"post_id"`
	Amount int64  `json:"amount"`
	Status string `json:"status"`
}

// keyedBody is a JSON body sent with an Idempotency-Key header.
type keyedBody struct {
	key  string
	body any
}

// TipsSummary reports the run's tips and what became of those whose
// outcome was unknown.
type TipsSummary struct {
	// OK counts tips answered 200 (one whose retry settled it counts once).
	OK int64 `json:"ok"`
	// OutcomeUnknown counts answers that left a tip's outcome unknown: a
	// 503 (payment_outcome_unknown, or payments unavailable), a 502 or 504
	// of a proxy, a timeout or a lost connection.
	OutcomeUnknown int64 `json:"outcome_unknown"`
	// Retries counts the retries with the same key, on the user's next
	// arrival or at the run's end.
	Retries int64 `json:"retries"`
	// Settled counts the tips with an unknown outcome that a retry
	// answered 200.
	Settled int64 `json:"settled"`
	// Checks counts the settled tips looked up in the user's payments
	// (GET /api/v1/me/payments); DoubleCharges those found charged more
	// than once, which must be 0; Unchecked those whose look-up failed.
	Checks        int64 `json:"checks"`
	DoubleCharges int64 `json:"double_charges"`
	Unchecked     int64 `json:"unchecked"`
	// Unsettled counts tips whose outcome was still unknown at the end,
	// after three more retries.
	Unsettled int64    `json:"unsettled"`
	Examples  []string `json:"examples,omitempty"`
}

// tip tips the author of a post that is not u's own.
func (g *generator) tip(ctx context.Context, u *user, due time.Time) {
	id := g.postByOther(u.handle)
	if id == "" {
		g.browse(ctx, u, due) // nothing to tip yet
		return
	}
	n := u.tips.Add(1)
	a := &tipAttempt{key: fmt.Sprintf("%s-tip-%d", u.handle, n), postID: id, amount: 50 + (n-1)%tipAmounts}
	g.sendTip(ctx, u, a, due)
}

// sendTip sends a (again, if its outcome was unknown) and records the
// answer as one tip arrival.
func (g *generator) sendTip(ctx context.Context, u *user, a *tipAttempt, due time.Time) {
	retry := a.unknown > 0
	session := u.session.Load()
	res := g.postTip(ctx, u, a, due)
	u.noteAuth(res, session)
	g.rec.add(res)
	g.mu.Lock()
	if retry {
		g.tips.Retries++
	}
	g.mu.Unlock()
	g.settleTip(ctx, u, a, res)
}

// settleTip notes what res, an answer to a, says: a success (checked for a
// double charge if an earlier answer left it unknown), an outcome still
// unknown (a is kept for u's next arrival), or a refusal, which charged
// nothing.
func (g *generator) settleTip(ctx context.Context, u *user, a *tipAttempt, res result) {
	switch {
	case res.ok():
		g.mu.Lock()
		g.tips.OK++
		if a.unknown > 0 {
			g.tips.Settled++
		}
		g.mu.Unlock()
		if a.unknown > 0 {
			g.checkCharges(ctx, u, a)
		}
	case outcomeUnknown(res):
		a.unknown++
		g.mu.Lock()
		g.tips.OutcomeUnknown++
		g.mu.Unlock()
		u.putTip(a)
	case res.status == http.StatusUnauthorized && a.unknown > 0:
		// Logged out between two tries: the key is the user's, not
		// the session's, so the retry after logging in again settles it.
		u.putTip(a)
	}
}

// postTip sends a once.
func (g *generator) postTip(ctx context.Context, u *user, a *tipAttempt, due time.Time) result {
	var out struct {
		Payment paymentJSON `json:"payment"`
	}
	in := keyedBody{key: a.key, body: map[string]any{"amount_cents": a.amount, "card": tipCard()}}
	res, _ := g.do(ctx, u, OpTip, due, http.MethodPost, "/api/v1/posts/"+url.PathEscape(a.postID)+"/tip", in, &out)
	if res.ok() && out.Payment.ID == "" {
		res.err = fmt.Errorf("%w: POST /api/v1/posts/%s/tip: no payment id", errBadAnswer, a.postID)
	}
	return res
}

// outcomeUnknown reports whether a tip's answer leaves open whether the
// card was charged: a 503 or a proxy's 502 or 504 (whose request may have
// reached the app), or no answer at all. A 2xx whose body was not the
// API's is not: the blog said yes.
func outcomeUnknown(res result) bool {
	switch res.status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case 0:
		return res.err != nil
	}
	return false
}

// checkCharges looks a's tip up in u's payments: more than one succeeded
// payment of its post and amount is a double charge.
func (g *generator) checkCharges(ctx context.Context, u *user, a *tipAttempt) {
	var out struct {
		Payments []paymentJSON `json:"payments"`
	}
	res, _ := g.do(ctx, u, OpTip, time.Now(), http.MethodGet, "/api/v1/me/payments", nil, &out)
	charged := 0
	for _, p := range out.Payments {
		if p.Kind == "tip" && p.PostID == a.postID && p.Amount == a.amount && p.Status == "succeeded" {
			charged++
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !res.ok():
		g.tips.Unchecked++
	case charged > 1:
		g.tips.Checks++
		g.tips.DoubleCharges++
		if len(g.tips.Examples) < maxExamples {
			g.tips.Examples = append(g.tips.Examples, fmt.Sprintf("%s was charged %d times for one tip of %d cents to post %s (key %s, retried %d times)",
				u.handle, charged, a.amount, a.postID, a.key, a.unknown))
		}
	default:
		g.tips.Checks++
	}
}

// settleTips retries, up to three times each, the tips still pending at
// the run's end (not measured: the run is over), and returns the tips'
// summary.
func (g *generator) settleTips(ctx context.Context) *TipsSummary {
	g.mu.Lock()
	users := append([]*user(nil), g.users...)
	g.mu.Unlock()
	for _, u := range users {
		// settleTip puts a tip still unknown back, at the end of u's.
		for a := u.takeTip(); a != nil; a = u.takeTip() {
			if a.endTries == 3 {
				g.mu.Lock()
				g.tips.Unsettled++
				g.mu.Unlock()
				continue
			}
			if a.endTries > 0 {
				time.Sleep(time.Duration(a.endTries) * 200 * time.Millisecond)
			}
			a.endTries++
			res := g.postTip(ctx, u, a, time.Now())
			g.mu.Lock()
			g.tips.Retries++
			g.mu.Unlock()
			g.settleTip(ctx, u, a, res)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tips
	t.Examples = append([]string(nil), t.Examples...)
	return &t
}

// putTip keeps a, whose outcome is unknown, for a later arrival of u.
func (u *user) putTip(a *tipAttempt) {
	u.mu.Lock()
	u.pendingTips = append(u.pendingTips, a)
	u.mu.Unlock()
}

// takeTip returns and removes u's oldest tip awaiting a retry, or nil.
func (u *user) takeTip() *tipAttempt {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pendingTips) == 0 {
		return nil
	}
	a := u.pendingTips[0]
	u.pendingTips = u.pendingTips[1:]
	return a
}
