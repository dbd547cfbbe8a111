package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/loadgen"
)

// How the fake blog's payments answer a tip.
const (
	// tipCharge charges and answers 200; a retry with the key answers
	// the same payment.
	tipCharge = iota
	// tipUnknownFirst charges, then answers the first request of each key
	// 503 payment_outcome_unknown, as the processor's timeout does; the
	// retry with the key answers the payment, charged once.
	tipUnknownFirst
	// tipDoubleCharge is tipUnknownFirst with the bug idempotency keys
	// exist to prevent: the retry charges again.
	tipDoubleCharge
)

type fakePayment struct {
	id, handle, postID string
	amount             int64
}

// services adds the routes of stage 10's other services: search, user
// pages, tips and the user's payments.
func (b *fakeBlog) services() {
	b.mux.HandleFunc("GET /api/v1/search", func(w http.ResponseWriter, r *http.Request) {
		b.searches.Add(1)
		if b.failSearch.Load() {
			http.Error(w, `{"error":"search is unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query().Get("q")
		if len(q) < 4 {
			http.Error(w, `{"error":"want a word of the posts"}`, http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		ps := []map[string]string{}
		for i := len(b.order) - 1; i >= 0 && len(ps) < 3; i-- {
			ps = append(ps, map[string]string{"id": b.order[i], "author": b.authors[b.order[i]]})
		}
		// As stage 10's gateway: itself, then the instance it called.
		w.Header().Set("X-Served-By", w.Header().Get("X-Served-By")+", search-1")
		json.NewEncoder(w).Encode(map[string]any{"posts": ps})
	})
	b.mux.HandleFunc("GET /api/v1/users/{handle}", func(w http.ResponseWriter, r *http.Request) {
		b.profiles.Add(1)
		h := r.PathValue("handle")
		b.mu.Lock()
		defer b.mu.Unlock()
		if !b.users[h] && h != "seed-author" {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"user": map[string]string{"handle": h}, "posts": []any{}})
	})
	b.mux.HandleFunc("POST /api/v1/posts/{id}/tip", func(w http.ResponseWriter, r *http.Request) {
		handle, ok := b.user(w, r)
		if !ok {
			return
		}
		var in struct {
			AmountCents int64 `json:"amount_cents"`
			Card        struct {
				Number string `json:"number"`
			} `json:"card"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		key, id := r.Header.Get("Idempotency-Key"), r.PathValue("id")
		b.mu.Lock()
		defer b.mu.Unlock()
		author, exists := b.authors[id]
		switch {
		case !exists:
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		case key == "" || author == handle || in.Card.Number != "4242424242424242" || in.AmountCents < 50 || in.AmountCents > 50_000:
			b.badTips.Add(1)
			http.Error(w, `{"error":"invalid","code":"invalid"}`, http.StatusBadRequest)
			return
		}
		i, retry := b.payKeys[handle+" "+key]
		if retry {
			if p := b.payments[i]; p.postID != id || p.amount != in.AmountCents {
				http.Error(w, `{"error":"key reused","code":"key_reused"}`, http.StatusConflict)
				return
			}
		}
		if !retry || b.tipMode.Load() == tipDoubleCharge {
			b.n++
			b.payments = append(b.payments, fakePayment{id: fmt.Sprintf("pay%d", b.n), handle: handle, postID: id, amount: in.AmountCents})
			i = len(b.payments) - 1
			b.payKeys[handle+" "+key] = i
		}
		if !retry && b.tipMode.Load() != tipCharge {
			w.Header().Set("Retry-After", "2")
			http.Error(w, `{"error":"not known yet","code":"payment_outcome_unknown"}`, http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"payment": b.payments[i].json()})
	})
	b.mux.HandleFunc("GET /api/v1/me/payments", func(w http.ResponseWriter, r *http.Request) {
		handle, ok := b.user(w, r)
		if !ok {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		ps := []any{}
		for i := len(b.payments) - 1; i >= 0 && len(ps) < 100; i-- {
			if p := b.payments[i]; p.handle == handle {
				ps = append(ps, p.json())
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"payments": ps})
	})
}

func (p fakePayment) json() map[string]any {
	return map[string]any{"id": p.id, "kind": "tip", "post_id": p.postID, "amount": p.amount, "status": "succeeded", "currency": "usd"}
}

// charges returns the number of payments of each handle and key... of
// each tip: payments by post and amount, per user.
func (b *fakeBlog) charges() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := map[string]int{}
	for _, p := range b.payments {
		m[fmt.Sprintf("%s %s %d", p.handle, p.postID, p.amount)]++
	}
	return m
}

func servicesConfig(target, mix string) loadgen.Config {
	cfg := loadgen.DefaultConfig()
	cfg.Target = target
	cfg.Rate = 200
	cfg.Duration = 600 * time.Millisecond
	cfg.Users = 4
	cfg.Mix, _ = loadgen.ParseMix(mix)
	return cfg
}

func TestServicesMixParses(t *testing.T) {
	m, err := loadgen.ParseMix(loadgen.ServicesMix)
	if err != nil {
		t.Fatalf("ParseMix(ServicesMix) error = %v", err)
	}
	for _, op := range []string{loadgen.OpSearch, loadgen.OpProfile, loadgen.OpTip, loadgen.OpBrowse} {
		if m.Share(op) == 0 {
			t.Errorf("ServicesMix %q has no %s", loadgen.ServicesMix, op)
		}
	}
}

func TestRunSearchesReadsProfilesAndTips(t *testing.T) {
	b := newFakeBlog()
	b.seed(5)
	srv := newServer(t, b)
	s, err := loadgen.Run(context.Background(), servicesConfig(srv.URL, "post=1,search=1,profile=1,tip=1"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Errors != 0 {
		t.Fatalf("%d errors (%v), want none", s.Errors, s.ErrorKinds)
	}
	for _, op := range []string{loadgen.OpSearch, loadgen.OpProfile, loadgen.OpTip} {
		if o := s.Ops[op]; o.Sent == 0 || o.OK != o.Sent || o.LongestOutage != 0 {
			t.Errorf("%s = %+v, want sent, every one ok, no outage", op, o)
		}
	}
	if got, want := b.searches.Load(), s.Ops[loadgen.OpSearch].Sent; got != want {
		t.Errorf("the blog answered %d searches, want %d", got, want)
	}
	if got, want := b.profiles.Load(), s.Ops[loadgen.OpProfile].Sent; got != want {
		t.Errorf("the blog answered %d user pages, want %d", got, want)
	}
	tips := s.Ops[loadgen.OpTip].OK
	for k, n := range b.charges() {
		if n != 1 {
			t.Errorf("tip %s charged %d times, want once", k, n)
		}
	}
	if got := int64(len(b.charges())); got != tips {
		t.Errorf("the blog charged %d tips, want %d (one per tip arrival)", got, tips)
	}
	if s.Tips == nil || s.Tips.OK != tips || s.Tips.OutcomeUnknown != 0 || s.Tips.DoubleCharges != 0 {
		t.Errorf("Tips = %+v, want %d ok and nothing unknown", s.Tips, tips)
	}
	// X-Served-By "fake-1, search-1": the app table counts the app, the
	// search op counts both.
	search := s.Ops[loadgen.OpSearch]
	if apps := s.Hops["X-Served-By"]; apps["fake-1"]+apps["fake-2"] != s.Answered || len(apps) != 2 {
		t.Errorf("Hops[X-Served-By] = %v, want the %d answers counted by app node alone", apps, s.Answered)
	}
	if got := search.ServedBy; got["search-1"] != search.Sent || got["fake-1"]+got["fake-2"] != search.Sent {
		t.Errorf("search's ServedBy = %v, want search-1 and the apps on each of its %d answers", got, search.Sent)
	}
	var out bytes.Buffer
	s.Print(&out)
	if !strings.Contains(out.String(), "instances by operation") || !strings.Contains(out.String(), "search-1") {
		t.Errorf("summary lacks the instances by operation:\n%s", out.String())
	}
}

// Every tip's first answer is 503 payment_outcome_unknown: each user
// retries it with its key on their next arrival (or at the run's end),
// which settles it, charged once, and finds one payment of it.
func TestRunRetriesAnUnknownTipWithItsKey(t *testing.T) {
	b := newFakeBlog()
	b.seed(5)
	b.tipMode.Store(tipUnknownFirst)
	srv := newServer(t, b)
	s, err := loadgen.Run(context.Background(), servicesConfig(srv.URL, "tip=1,browse=1"))
	if err != nil {
		t.Fatal(err)
	}
	tips, tip := s.Tips, s.Ops[loadgen.OpTip]
	if tips == nil || tips.OutcomeUnknown == 0 {
		t.Fatalf("Tips = %+v, want outcomes unknown", tips)
	}
	charges := b.charges()
	if tips.Settled != int64(len(charges)) || tips.OK != tips.Settled || tips.Unsettled != 0 {
		t.Errorf("Tips = %+v; want each of the %d tips charged settled by its retry", tips, len(charges))
	}
	if tips.Checks != tips.Settled || tips.DoubleCharges != 0 || tips.Unchecked != 0 {
		t.Errorf("Tips = %+v, want every settled tip checked, no double charge", tips)
	}
	for k, n := range charges {
		if n != 1 {
			t.Errorf("tip %s charged %d times, want once", k, n)
		}
	}
	if tip.Errors != tips.OutcomeUnknown || s.ErrorKinds["status 503 Service Unavailable"] != tip.Errors {
		t.Errorf("tip = %+v, errors %v; want each unknown outcome counted as an error of tip (%d)", tip, s.ErrorKinds, tips.OutcomeUnknown)
	}
	if tips.Retries < tips.Settled {
		t.Errorf("Tips = %+v, want at least one retry per settled tip", tips)
	}
	if b.badTips.Load() != 0 {
		t.Errorf("%d tips the blog refuses (no key, own post, wrong card or amount), want none", b.badTips.Load())
	}
}

// A payments side that charges again on the retry is caught.
func TestRunCountsADoubleCharge(t *testing.T) {
	b := newFakeBlog()
	b.seed(5)
	b.tipMode.Store(tipDoubleCharge)
	srv := newServer(t, b)
	s, err := loadgen.Run(context.Background(), servicesConfig(srv.URL, "tip=1,browse=1"))
	if err != nil {
		t.Fatal(err)
	}
	tips := s.Tips
	if tips == nil || tips.Settled == 0 || tips.DoubleCharges != tips.Settled || len(tips.Examples) == 0 {
		t.Fatalf("Tips = %+v, want every settled tip found charged twice, with examples", tips)
	}
	var out bytes.Buffer
	s.Print(&out)
	if !strings.Contains(out.String(), fmt.Sprintf("DOUBLE CHARGES %d", tips.DoubleCharges)) || !strings.Contains(out.String(), "charged 2 times") {
		t.Errorf("summary does not show the double charges:\n%s", out.String())
	}
}

// Search is down for the whole run: search's every answer is its error and
// its outage lasts the run, while the content and users ops keep serving.
func TestRunSearchOutageLeavesTheOtherOpsServing(t *testing.T) {
	b := newFakeBlog()
	b.seed(5)
	b.failSearch.Store(true)
	srv := newServer(t, b)
	cfg := servicesConfig(srv.URL, "browse=1,read=1,search=1,profile=1")
	cfg.VerifyWrites = false
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	search := s.Ops[loadgen.OpSearch]
	if search.Sent == 0 || search.Errors != search.Sent || search.LongestOutage <= 0 {
		t.Errorf("search = %+v, want every one failed and an outage", search)
	}
	for _, op := range []string{loadgen.OpBrowse, loadgen.OpRead, loadgen.OpProfile} {
		if o := s.Ops[op]; o.Sent == 0 || o.OK != o.Sent || o.LongestOutage != 0 {
			t.Errorf("%s = %+v, want every one ok, no outage", op, o)
		}
	}
}
