package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// Tips and the supporter badge, through the blog (docs/api.md, Payments;
// docs/payments.md, How the blog calls it). The gateway checks who pays
// (the session) and whom (the post's author), and hands the charge to the
// payments service (Services.Payments: in-process, or its client at stage
// 10) under the payer's idempotency key. The key comes from the client, as
// Stripe takes it: the Idempotency-Key header of the API, a hidden field
// made for each rendered form on the pages. So a retried request (a lost
// answer, a double click, a reload that resubmits) is charged once and
// answers the same payment. The gateway keeps nothing of its own.

// HeaderIdempotencyKey is the request field that carries the payer's key
// for a charge (POST .../tip, POST .../supporter-badge).
const HeaderIdempotencyKey = "Idempotency-Key"

// paymentRoutes registers the payment routes (called from routes).
func (w *web) paymentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/posts/{id}/tip", w.apiTip)
	mux.HandleFunc("POST /api/v1/me/supporter-badge", w.apiBuyBadge)
	mux.HandleFunc("GET /api/v1/me/payments", w.apiPayments)
	mux.HandleFunc("POST /p/{id}/tip", w.formTip)
	mux.HandleFunc("GET /supporter-badge", w.pageBadge)
	mux.HandleFunc("POST /supporter-badge", w.formBadge)
}

// errNoPayments: the app runs without a payments service (Services given
// without one).
var errNoPayments = fmt.Errorf("no payments service: %w", rpc.ErrUnavailable)

// payFailure is how a charge that did not succeed is answered: the
// status, a code (the issuer's for a decline, the wire's otherwise), a
// message for the payer, the field at fault, and whether a retry must
// keep the key (the outcome is not known, or nothing was done) or needs a
// new one (the key now names a settled payment).
type payFailure struct {
	status  int
	code    string
	msg     string
	field   string
	sameKey bool
}

// payFailed maps the error of a charge; ok is false for the errors the
// app answers as any other (a store outage, a bug).
func payFailed(p payments.Payment, err error) (f payFailure, ok bool) {
	var fe *svc.FieldError
	switch {
	case errors.Is(err, payments.ErrDeclined), errors.Is(err, payments.ErrFailed):
		f = payFailure{status: http.StatusPaymentRequired, code: p.Code, msg: p.Message}
		if f.code == "" { // the payment could not be read back: the error says
			f.code = "card_declined"
			if errors.Is(err, payments.ErrFailed) {
				f.code = "processing_error"
			}
		}
		if f.msg == "" {
			f.msg = "Your card was declined."
			if errors.Is(err, payments.ErrFailed) {
				f.msg = "The payment failed; nothing was taken. Try again in a little bit."
			}
		}
	case errors.Is(err, payments.ErrKeyReused):
		f = payFailure{status: http.StatusConflict, code: "key_reused",
			msg: "this idempotency key was used for another payment: use a new key for a new payment"}
	case errors.Is(err, payments.ErrInProgress):
		f = payFailure{status: http.StatusConflict, code: "in_progress",
			msg: "another supporter badge payment of yours has not settled yet: retry it with its key"}
	case errors.Is(err, svc.ErrExists):
		f = payFailure{status: http.StatusConflict, code: "exists", msg: "you have the supporter badge already"}
	case errors.As(err, &fe):
		field := map[string]string{"amount": "amount_cents", "key": HeaderIdempotencyKey, "to_author_id": "post"}[fe.Field]
		if field == "" {
			field = fe.Field
		}
		f = payFailure{status: http.StatusBadRequest, code: "invalid", msg: field + " " + fe.Msg, field: field, sameKey: true}
	case errors.Is(err, payments.ErrOutcomeUnknown), errors.Is(err, rpc.ErrOutcomeUnknown), errors.Is(err, context.DeadlineExceeded):
		f = payFailure{status: http.StatusServiceUnavailable, code: "payment_outcome_unknown", sameKey: true,
			msg: "the payment's outcome is not known yet: retry with the same idempotency key, which is never charged twice"}
	case errors.Is(err, rpc.ErrUnavailable):
		f = payFailure{status: http.StatusServiceUnavailable, code: "unavailable", sameKey: true,
			msg: "payments are unavailable; try again in a moment, with the same idempotency key"}
	default:
		return payFailure{}, false
	}
	return f, true
}

// apiPayFailed answers a charge that did not succeed: the error, its code,
// and the payment when there is one (a decline's says why).
func (w *web) apiPayFailed(rw http.ResponseWriter, r *http.Request, p payments.Payment, err error) {
	f, ok := payFailed(p, err)
	if !ok || clientGone(r) {
		w.error(rw, r, err)
		return
	}
	if f.status >= 500 {
		w.log.WarnContext(r.Context(), "app: payment not answered", "status", f.status, "code", f.code, "err", err)
		rw.Header().Set("Retry-After", retryAfter)
	}
	body := map[string]any{"error": f.msg, "code": f.code}
	if f.field != "" {
		body["field"] = f.field
	}
	if p.ID != "" {
		body["payment"] = p
	}
	w.writeJSON(rw, f.status, body)
}

// payKey reads the Idempotency-Key of an API charge, or answers 400.
func (w *web) payKey(rw http.ResponseWriter, r *http.Request) (string, bool) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" {
		w.fail(rw, r, http.StatusBadRequest, HeaderIdempotencyKey+" is required: a key you make for this payment "+
			"(a UUID, say) and send again, unchanged, on every retry of it", HeaderIdempotencyKey)
		return "", false
	}
	return key, true
}

func (w *web) apiTip(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	var in struct {
		AmountCents int64         `json:"amount_cents"`
		Card        payments.Card `json:"card"`
	}
	key, ok := w.payKey(rw, r)
	if !ok || !w.readJSON(rw, r, &in) {
		return
	}
	p, err := w.visiblePost(r.Context(), r, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	pay, err := w.tip(r, s, p, key, in.AmountCents, in.Card)
	if err != nil {
		w.apiPayFailed(rw, r, pay, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"payment": pay})
}

// tip charges the session's user amount cents for a tip to p's author.
func (w *web) tip(r *http.Request, s *Session, p posts.Post, key string, amount int64, card payments.Card) (payments.Payment, error) {
	if w.svc.Payments == nil {
		return payments.Payment{}, errNoPayments
	}
	switch {
	case !p.Published:
		return payments.Payment{}, svc.Invalid("post", "is a draft: tips go to published posts")
	case p.AuthorID == s.UserID:
		return payments.Payment{}, svc.Invalid("post", "is your own: tips go to other authors")
	}
	pay, err := w.svc.Payments.Tip(r.Context(), payments.TipRequest{Key: key, FromUserID: s.UserID,
		ToAuthorID: p.AuthorID, PostID: p.ID, Amount: amount, Card: card})
	w.noteWrite(r) // a payment is recorded even when the card is declined
	return pay, err
}

func (w *web) apiBuyBadge(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	var in struct {
		Card payments.Card `json:"card"`
	}
	key, ok := w.payKey(rw, r)
	if !ok || !w.readJSON(rw, r, &in) {
		return
	}
	pay, err := w.buyBadge(r, s, key, in.Card)
	if err != nil {
		w.apiPayFailed(rw, r, pay, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"payment": pay})
}

func (w *web) buyBadge(r *http.Request, s *Session, key string, card payments.Card) (payments.Payment, error) {
	if w.svc.Payments == nil {
		return payments.Payment{}, errNoPayments
	}
	pay, err := w.svc.Payments.BuySupporterBadge(r.Context(), payments.BadgeRequest{Key: key, UserID: s.UserID, Card: card})
	w.noteWrite(r)
	return pay, err
}

func (w *web) apiPayments(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	if w.svc.Payments == nil {
		w.apiPayFailed(rw, r, payments.Payment{}, errNoPayments)
		return
	}
	ps, err := w.svc.Payments.ForUser(r.Context(), s.UserID, 0)
	if err != nil {
		if errors.Is(err, rpc.ErrUnavailable) {
			w.apiPayFailed(rw, r, payments.Payment{}, err)
			return
		}
		w.error(rw, r, err)
		return
	}
	if ps == nil {
		ps = []payments.Payment{}
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"payments": ps})
}

// The pages: a tip form under a post, for a logged-in reader who is not
// its author; on one's own profile, a form to buy the badge; on every
// profile, the badge when its user has one. Each is left out, and the
// page rendered without it, when the service cannot say.

// payView is what the payment partial (templates/partial_payments.html)
// shows.
type payView struct {
	// TipForm: the post page offers a tip; BadgeForm: the profile page
	// offers the badge (to its owner, who has none).
	TipForm, BadgeForm bool
	// Key is the form's idempotency key: one per rendered form, so that
	// submitting it twice is one payment. A form shown again with an
	// error keeps it only when the retry must (the outcome is unknown).
	Key string
	// Form and Errors are the values typed and the messages beside them;
	// Error is the message of the whole form.
	Form   map[string]string
	Errors map[string]string
	Error  string
	// Done says how the payment just made went (after the redirect).
	Done string
	// Supporter: the profile's user has the supporter badge.
	Supporter bool
	// Price is the badge's, MinTip and MaxTip a tip's bounds, in dollars.
	Price, MinTip, MaxTip string
}

func newPayView() *payView {
	return &payView{Form: map[string]string{}, Errors: map[string]string{},
		Price: dollars(payments.BadgePrice), MinTip: dollars(payments.MinTip), MaxTip: dollars(payments.MaxTip)}
}

// newPayKey returns a fresh idempotency key for a form.
func newPayKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return "form-" + hex.EncodeToString(b)
}

// dollars formats cents of USD.
func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// payPost adds the tip form to the page of post p (showPost).
func (w *web) payPost(r *http.Request, d *pageData, p posts.Post) {
	if d.Viewer == nil || d.Owner || !p.Published || w.svc.Payments == nil {
		return
	}
	if d.Pay == nil {
		d.Pay = newPayView()
	}
	d.Pay.TipForm = true
	if d.Pay.Key == "" {
		d.Pay.Key = newPayKey()
	}
	if id := r.URL.Query().Get("paid"); id != "" && d.Pay.Done == "" {
		if pay, err := w.svc.Payments.Payment(r.Context(), id); err == nil && pay.UserID == d.Viewer.UserID && pay.PostID == p.ID {
			d.Pay.Done = fmt.Sprintf("Thank you! Your tip of %s to @%s went through (%s ending in %s).",
				dollars(pay.Amount), p.Author, pay.Card.Brand, pay.Card.Last4)
		}
	}
}

// payProfile adds the supporter badge to the profile page of userID
// (pageAuthor), and to its owner without one a link to buy it.
func (w *web) payProfile(r *http.Request, d *pageData, userID string) {
	if d.Pay == nil {
		d.Pay = newPayView()
	}
	_, err := w.svc.Accounts.Badge(r.Context(), userID)
	switch {
	case err == nil:
		d.Pay.Supporter = true
	case errors.Is(err, svc.ErrNotFound):
		d.Pay.BadgeForm = d.Owner && w.svc.Payments != nil
	default:
		// Shown without the badge: better than no profile.
		w.log.WarnContext(r.Context(), "app: supporter badge not shown", "user", userID, "err", err)
	}
}

// payFormFailed puts the error of a charge made from a form on the form,
// and returns the status to show it with; ok is false for the errors the
// app answers as any other.
func payFormFailed(pv *payView, p payments.Payment, err error) (int, bool) {
	f, ok := payFailed(p, err)
	if !ok {
		return 0, false
	}
	var fe *svc.FieldError
	if errors.As(err, &fe) {
		if field := map[string]string{"amount": "amount", "card.number": "number", "card.exp_month": "exp",
			"card.exp_year": "exp", "card.cvc": "cvc"}[fe.Field]; field != "" {
			pv.Errors[field] = "The " + strings.TrimPrefix(fe.Field, "card.") + " " + fe.Msg + "."
			return f.status, true
		}
	}
	switch f.status {
	case http.StatusPaymentRequired:
		pv.Error = f.msg + " (" + f.code + ")"
	case http.StatusServiceUnavailable:
		pv.Error = "We could not confirm the payment yet. Submit the form again: it is charged at most once."
	default:
		pv.Error = strings.ToUpper(f.msg[:1]) + f.msg[1:] + "."
	}
	if !f.sameKey {
		pv.Key = "" // a new form, a new payment
	}
	return f.status, true
}

// cardForm reads the card fields of a payment form into pv.Form, and
// the card; a field it cannot read gets its message in pv.Errors.
func cardForm(r *http.Request, pv *payView) payments.Card {
	for _, f := range []string{"number", "exp", "cvc"} {
		pv.Form[f] = strings.TrimSpace(r.PostForm.Get(f))
	}
	c := payments.Card{Number: pv.Form["number"], CVC: pv.Form["cvc"]}
	m, y, ok := strings.Cut(strings.ReplaceAll(pv.Form["exp"], " ", ""), "/")
	var merr, yerr error
	c.ExpMonth, merr = strconv.Atoi(m)
	c.ExpYear, yerr = strconv.Atoi(y)
	if !ok || merr != nil || yerr != nil {
		pv.Errors["exp"] = "The expiry must be MM/YY, as on the card."
	}
	return c
}

// parseDollars reads an amount typed in dollars ("3", "3.5", "$3.50") as
// cents.
func parseDollars(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "$")
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 7 || len(frac) > 2 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, false
	}
	d, _ := strconv.ParseInt(whole, 10, 64)
	c, _ := strconv.ParseInt((frac + "00")[:2], 10, 64)
	return d*100 + c, true
}

func (w *web) formTip(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil || !w.parseForm(rw, r) {
		return
	}
	p, err := w.visiblePost(r.Context(), r, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	pv := newPayView()
	pv.Key = r.PostForm.Get("key")
	card := cardForm(r, pv)
	pv.Form["amount"] = strings.TrimSpace(r.PostForm.Get("amount"))
	amount, ok := parseDollars(pv.Form["amount"])
	if !ok {
		pv.Errors["amount"] = "The amount must be in dollars, such as 3 or 2.50."
	}
	code := http.StatusBadRequest
	if len(pv.Errors) == 0 {
		pay, err := w.tip(r, s, p, pv.Key, amount, card)
		if err == nil {
			http.Redirect(rw, r, "/p/"+p.ID+"?paid="+pay.ID+"#tip", http.StatusSeeOther)
			return
		}
		var handled bool
		if code, handled = payFormFailed(pv, pay, err); !handled {
			w.error(rw, r, err)
			return
		}
	}
	pv.Form["number"], pv.Form["cvc"] = "", "" // never echo a card back into a page
	if code == http.StatusServiceUnavailable {
		rw.Header().Set("Retry-After", retryAfter) // as every 503 of the app (web.fail)
	}
	d := w.data(r, p.Title)
	d.Pay = pv
	w.showPost(rw, r, code, p, d)
}

// pageBadge shows the supporter badge's form, or says that the viewer has
// the badge.
func (w *web) pageBadge(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil {
		return
	}
	w.showBadge(rw, r, http.StatusOK, s, newPayView())
}

func (w *web) showBadge(rw http.ResponseWriter, r *http.Request, code int, s *Session, pv *payView) {
	d := w.data(r, "Become a supporter")
	d.Heading, d.Pay = "Become a supporter", pv
	_, err := w.svc.Accounts.Badge(r.Context(), s.UserID)
	switch {
	case err == nil:
		pv.Supporter = true
	case !errors.Is(err, svc.ErrNotFound):
		w.error(rw, r, err)
		return
	case w.svc.Payments == nil:
		w.error(rw, r, errNoPayments)
		return
	default:
		pv.BadgeForm = true
		if pv.Key == "" {
			pv.Key = newPayKey()
		}
	}
	w.render(rw, r, code, "supporter", d, cacheInfo{Private: true})
}

func (w *web) formBadge(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil || !w.parseForm(rw, r) {
		return
	}
	pv := newPayView()
	pv.Key = r.PostForm.Get("key")
	card := cardForm(r, pv)
	code := http.StatusBadRequest
	if len(pv.Errors) == 0 {
		pay, err := w.buyBadge(r, s, pv.Key, card)
		if err == nil || errors.Is(err, svc.ErrExists) {
			http.Redirect(rw, r, "/u/"+s.Handle+"#supporter", http.StatusSeeOther)
			return
		}
		var handled bool
		if code, handled = payFormFailed(pv, pay, err); !handled {
			w.error(rw, r, err)
			return
		}
	}
	pv.Form["number"], pv.Form["cvc"] = "", ""
	if code == http.StatusServiceUnavailable {
		rw.Header().Set("Retry-After", retryAfter)
	}
	w.showBadge(rw, r, code, s, pv)
}
