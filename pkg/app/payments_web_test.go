package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// card is a test card as the API takes it.
func card(number string) map[string]any {
	return map[string]any{"number": number, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"}
}

// payers returns an author with a published post, and a reader, each a
// logged-in client.
func payers(t *testing.T, s *stack) (author, reader *client, postID string) {
	t.Helper()
	author, reader = s.client(t), s.client(t)
	author.signup("ada")
	reader.signup("bob")
	return author, reader, author.post("Worth a tip", "Some *words*.")["id"].(string)
}

func tipBody(cents int, number string) map[string]any {
	return map[string]any{"amount_cents": cents, "card": card(number)}
}

func paymentOf(t *testing.T, r response) map[string]any {
	t.Helper()
	p, ok := r.JSON(t)["payment"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no payment: %s", r.Body)
	}
	return p
}

// A tip sent again with its key (a lost answer, a double click) is charged
// once and answers the same payment; the same key for another amount is
// 409; a declined card is 402 with the issuer's code.
func TestTipChargedOnceUnderRetriedKey(t *testing.T) {
	s := newStack(t)
	author, reader, post := payers(t, s)
	path := "/api/v1/posts/" + post + "/tip"

	r1 := reader.json("POST", path, tipBody(300, payments.CardVisa), "Idempotency-Key", "k-1")
	want(t, "tip", r1, http.StatusOK)
	r2 := reader.json("POST", path, tipBody(300, payments.CardVisa), "Idempotency-Key", "k-1")
	want(t, "the tip again with its key", r2, http.StatusOK)
	p1, p2 := paymentOf(t, r1), paymentOf(t, r2)
	if p1["id"] != p2["id"] || p1["status"] != "succeeded" || p1["amount"] != 300.0 || p1["post_id"] != post {
		t.Fatalf("tip, then its retry = %v, %v; want one succeeded payment of 300 on post %s", p1, p2, post)
	}
	tot, err := s.App.Services().Payments.TipsFor(context.Background(), p1["author_id"].(string))
	if err != nil || tot.Count != 1 || tot.Amount != 300 {
		t.Errorf("TipsFor the author = %+v, %v; want one tip of 300 (charged once)", tot, err)
	}

	r := reader.json("POST", path, tipBody(400, payments.CardVisa), "Idempotency-Key", "k-1")
	want(t, "key k-1 for 400", r, http.StatusConflict)
	if code := r.JSON(t)["code"]; code != "key_reused" {
		t.Errorf("key reused: code %v, want key_reused", code)
	}

	for _, tt := range []struct{ number, code string }{
		{payments.CardDeclined, "card_declined"},
		{payments.CardInsufficientFunds, "insufficient_funds"},
		{payments.CardProcessingError, "processing_error"},
	} {
		r := reader.json("POST", path, tipBody(300, tt.number), "Idempotency-Key", "k-"+tt.number)
		want(t, "tip with card "+tt.number, r, http.StatusPaymentRequired)
		body := r.JSON(t)
		if body["code"] != tt.code || paymentOf(t, r)["status"] == "succeeded" {
			t.Errorf("tip with card %s = %s; want code %s and the payment", tt.number, r.Body, tt.code)
		}
	}

	r = reader.json("POST", path, tipBody(10, payments.CardVisa), "Idempotency-Key", "k-small")
	want(t, "a tip of 10 cents", r, http.StatusBadRequest)
	if f := r.JSON(t)["field"]; f != "amount_cents" {
		t.Errorf("a tip of 10 cents: field %v, want amount_cents", f)
	}
	want(t, "a tip without a key", reader.json("POST", path, tipBody(300, payments.CardVisa)), http.StatusBadRequest)
	r = author.json("POST", path, tipBody(300, payments.CardVisa), "Idempotency-Key", "own")
	want(t, "a tip to oneself", r, http.StatusBadRequest)
	if f := r.JSON(t)["field"]; f != "post" {
		t.Errorf("a tip to oneself: field %v, want post", f)
	}

	list := reader.get("/api/v1/me/payments")
	want(t, "my payments", list, http.StatusOK)
	if ps := list.JSON(t)["payments"].([]any); len(ps) != 4 || ps[len(ps)-1].(map[string]any)["id"] != p1["id"] {
		t.Errorf("my payments = %s; want 4, the first tip last", list.Body)
	}
}

func TestPaymentsAPIRequiresLogin(t *testing.T) {
	s := newStack(t)
	_, _, post := payers(t, s)
	anon := s.client(t)
	for _, r := range []response{
		anon.json("POST", "/api/v1/posts/"+post+"/tip", tipBody(300, payments.CardVisa), "Idempotency-Key", "k"),
		anon.json("POST", "/api/v1/me/supporter-badge", map[string]any{"card": card(payments.CardVisa)}, "Idempotency-Key", "k"),
		anon.get("/api/v1/me/payments"),
	} {
		want(t, "a payment route without a session", r, http.StatusUnauthorized)
	}
	if r := anon.form("/p/"+post+"/tip", "amount", "3"); r.Code != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/login") {
		t.Errorf("the tip form without a session: %d to %q, want 303 to /login", r.Code, r.Header.Get("Location"))
	}
}

// The badge bought over the API, with --jobs=inline, is on the profile
// when the answer comes: the event is applied in-process. Retrying with
// the key answers the same payment; another key is 409.
func TestBadgeAppearsOnProfile(t *testing.T) {
	s := newStack(t)
	bob := s.client(t)
	bob.signup("bob")
	if r := s.client(t).get("/u/bob"); strings.Contains(r.String(), `id="supporter"`) {
		t.Fatalf("bob's profile shows the badge before he bought it")
	}
	body := map[string]any{"card": card(payments.CardVisa)}
	r1 := bob.json("POST", "/api/v1/me/supporter-badge", body, "Idempotency-Key", "badge-1")
	want(t, "buy the badge", r1, http.StatusOK)
	p := paymentOf(t, r1)
	if p["kind"] != "badge" || p["amount"] != float64(payments.BadgePrice) || p["event_id"] == "" {
		t.Fatalf("badge payment = %v", p)
	}
	page := s.client(t).get("/u/bob")
	want(t, "bob's profile", page, http.StatusOK)
	wantIn(t, "bob's profile", page, `id="supporter"`)

	r2 := bob.json("POST", "/api/v1/me/supporter-badge", body, "Idempotency-Key", "badge-1")
	want(t, "the badge again with its key", r2, http.StatusOK)
	if paymentOf(t, r2)["id"] != p["id"] {
		t.Errorf("the badge's retry = %s, want payment %v", r2.Body, p["id"])
	}
	want(t, "the badge with another key", bob.json("POST", "/api/v1/me/supporter-badge", body, "Idempotency-Key", "badge-2"), http.StatusConflict)
	b, err := s.App.Services().Accounts.Badge(context.Background(), p["user_id"].(string))
	if err != nil || b.PaymentID != p["id"] {
		t.Errorf("Badge = %+v, %v; want the one payment %v bought", b, err, p["id"])
	}
}

var keyField = regexp.MustCompile(`name="key" value="([^"]+)"`)

// The post page's tip form carries a key per rendered form: submitting
// it twice is one payment; a declined card shows the message and a new key.
func TestTipForm(t *testing.T) {
	s := newStack(t)
	author, reader, post := payers(t, s)
	if r := author.get("/p/" + post); strings.Contains(r.String(), `id="tip"`) {
		t.Errorf("the author's own post page offers a tip")
	}
	page := reader.get("/p/" + post)
	m := keyField.FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("the post page has no tip form with a key: %s", page.Body)
	}
	exp := "12/" + time.Now().AddDate(2, 0, 0).Format("06")
	fields := []string{"key", m[1], "amount", "2.50", "number", "4242 4242 4242 4242", "exp", exp, "cvc", "123"}
	var paid []string
	for range 2 {
		r := reader.form("/p/"+post+"/tip", fields...)
		if r.Code != http.StatusSeeOther {
			t.Fatalf("submit the tip form: %d %s", r.Code, r.Body)
		}
		paid = append(paid, r.Header.Get("Location"))
	}
	if paid[0] != paid[1] {
		t.Errorf("the form submitted twice went to %q and %q, want one payment", paid[0], paid[1])
	}
	wantIn(t, "the page after the tip", reader.get(paid[0]), "Your tip of $2.50 to @ada went through")
	viaAPI := reader.json("POST", "/api/v1/posts/"+post+"/tip", tipBody(300, payments.CardVisa), "Idempotency-Key", "api-1")
	want(t, "a tip over the API", viaAPI, http.StatusOK)
	ps, err := s.App.Services().Payments.ForUser(context.Background(), paymentOf(t, viaAPI)["user_id"].(string), 0)
	if err != nil || len(ps) != 2 {
		t.Errorf("bob's payments = %d, %v; want 2 (one by the form twice, one by the API)", len(ps), err)
	}

	fields[1], fields[5] = keyField.FindStringSubmatch(reader.get("/p/" + post).String())[1], payments.CardDeclined
	r := reader.form("/p/"+post+"/tip", fields...)
	want(t, "the form with a declined card", r, http.StatusPaymentRequired)
	wantIn(t, "the form with a declined card", r, "Your card was declined.", "card_declined")
	if m := keyField.FindStringSubmatch(r.String()); m == nil || m[1] == fields[1] {
		t.Errorf("the form shown again after a decline keeps key %q; want a new one", fields[1])
	}
	if strings.Contains(r.String(), payments.CardDeclined) {
		t.Errorf("the card number is echoed back into the page")
	}
}

// The processor answers too late: 503, and the retry with the same key
// settles the one charge (what a payments node killed mid-charge leaves,
// seen from the gateway).
func TestTipOutcomeUnknownThenRetry(t *testing.T) {
	proc := payments.NewSimulated()
	proc.LateAnswer = time.Minute // never in time: the charge is taken, its answer lost
	s := newStack(t, func(c *app.Config, d *app.Deps) {
		svcs := app.NewServices(d.Store, c.BcryptCost)
		ps := payments.New(d.Store, proc)
		ps.ChargeTimeout = 50 * time.Millisecond
		svcs.Payments = ps
		d.Services = &svcs
	})
	_, reader, post := payers(t, s)
	path := "/api/v1/posts/" + post + "/tip"
	r := reader.json("POST", path, tipBody(300, payments.CardTimeout), "Idempotency-Key", "slow-1")
	want(t, "a tip whose answer comes late", r, http.StatusServiceUnavailable)
	if r.JSON(t)["code"] != "payment_outcome_unknown" || r.Header.Get("Retry-After") == "" {
		t.Errorf("late answer = %s (Retry-After %q); want payment_outcome_unknown with Retry-After", r.Body, r.Header.Get("Retry-After"))
	}
	r = reader.json("POST", path, tipBody(300, payments.CardTimeout), "Idempotency-Key", "slow-1")
	want(t, "the retry with the same key", r, http.StatusOK)
	if st := paymentOf(t, r)["status"]; st != "succeeded" || proc.Charges() != 1 || proc.Captured() != 300 {
		t.Errorf("after the retry: status %v, %d charges, %d captured; want succeeded, 1, 300", st, proc.Charges(), proc.Captured())
	}
}

// Stage 10's path: the gateway calls the payments service over the wire
// (payments.NewClient over an rpc server with payments.Register), and
// answers as in-process: one charge per key, a decline with its code.
func TestTipOverThePaymentsClient(t *testing.T) {
	proc := payments.NewSimulated()
	s := newStack(t, func(c *app.Config, d *app.Deps) {
		srv, err := rpc.NewServer(rpc.ServerConfig{Service: payments.Name, Instance: "payments-1", Codes: payments.Codes})
		if err != nil {
			t.Fatal(err)
		}
		payments.Register(srv, payments.New(openDB(t), proc))
		hs := httptest.NewServer(srv)
		t.Cleanup(hs.Close)
		cl, err := rpc.New(rpc.Config{Service: payments.Name, Codes: payments.Codes,
			Instances: func() []rpc.Instance { return []rpc.Instance{{Name: "payments-1", Addr: hs.Listener.Addr().String()}} }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		svcs := app.NewServices(d.Store, c.BcryptCost)
		svcs.Payments = payments.NewClient(cl)
		d.Services = &svcs
	})
	_, reader, post := payers(t, s)
	path := "/api/v1/posts/" + post + "/tip"
	for range 2 {
		want(t, "tip over the wire", reader.json("POST", path, tipBody(300, payments.CardVisa), "Idempotency-Key", "w-1"), http.StatusOK)
	}
	r := reader.json("POST", path, tipBody(300, payments.CardExpired), "Idempotency-Key", "w-2")
	want(t, "an expired card over the wire", r, http.StatusPaymentRequired)
	if r.JSON(t)["code"] != "expired_card" {
		t.Errorf("an expired card over the wire = %s, want code expired_card", r.Body)
	}
	if proc.Charges() != 2 || proc.Captured() != 300 {
		t.Errorf("processor: %d charges, %d captured; want 2 (one per key), 300", proc.Charges(), proc.Captured())
	}
	want(t, "my payments over the wire", reader.get("/api/v1/me/payments"), http.StatusOK)
}

// The badge bought from its page: the owner's profile links to it, the
// form charges once, and the profile then shows the badge to anyone.
func TestBadgeForm(t *testing.T) {
	s := newStack(t)
	bob := s.client(t)
	bob.signup("bob")
	wantIn(t, "bob's own profile", bob.get("/u/bob"), `href="/supporter-badge"`)
	if r := s.client(t).get("/u/bob"); strings.Contains(r.String(), `href="/supporter-badge"`) {
		t.Errorf("a stranger is offered bob's badge")
	}
	page := bob.get("/supporter-badge")
	want(t, "the badge page", page, http.StatusOK)
	m := keyField.FindStringSubmatch(page.String())
	if m == nil {
		t.Fatalf("the badge page has no form with a key: %s", page.Body)
	}
	exp := "12/" + time.Now().AddDate(2, 0, 0).Format("06")
	r := bob.form("/supporter-badge", "key", m[1], "number", payments.CardInsufficientFunds, "exp", exp, "cvc", "123")
	want(t, "the badge with no funds", r, http.StatusPaymentRequired)
	wantIn(t, "the badge with no funds", r, "insufficient_funds")
	m = keyField.FindStringSubmatch(r.String())
	if m == nil {
		t.Fatalf("the badge page after a decline has no form: %s", r.Body)
	}
	for range 2 {
		r = bob.form("/supporter-badge", "key", m[1], "number", payments.CardMastercard, "exp", exp, "cvc", "123")
		if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/u/bob#supporter" {
			t.Fatalf("buy the badge: %d to %q; want 303 to /u/bob#supporter (%s)", r.Code, r.Header.Get("Location"), r.Body)
		}
	}
	wantIn(t, "bob's profile", s.client(t).get("/u/bob"), `id="supporter"`)
	wantIn(t, "the badge page once bought", bob.get("/supporter-badge"), "You are a supporter")
	me := bob.get("/api/v1/me").JSON(t)["user"].(map[string]any)
	ps, err := s.App.Services().Payments.ForUser(context.Background(), me["id"].(string), 0)
	if err != nil || len(ps) != 2 {
		t.Errorf("bob's payments = %d, %v; want 2 (the decline, then one badge for two submits)", len(ps), err)
	}
}
