package app_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
)

// rateLimited returns scalestack_app_rate_limited_total{action,by} from reg.
func rateLimited(tb testing.TB, reg *prometheus.Registry, action, by string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "scalestack_app_rate_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["action"] == action && labels["by"] == by {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// wantTooMany fails unless r is a 429 with a Retry-After of whole seconds.
func wantTooMany(tb testing.TB, what string, r response) {
	tb.Helper()
	want(tb, what, r, http.StatusTooManyRequests)
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		tb.Errorf("%s: Retry-After %q, want a number of seconds", what, r.Header.Get("Retry-After"))
	}
}

// from is the X-Forwarded-For header of a request that came through the
// lb from addr: the test's loopback connection is a trusted proxy.
func from(addr string) []string { return []string{"X-Forwarded-For", addr} }

// The probe of issue 15 sent 30 wrong passwords in 2.6 s, then the right
// one, and all were answered. Now the 31st log-in attempt from one address
// in a burst gets 429 with Retry-After, whichever handles it tries, the
// right password included, and the metric counts it; another address is
// not affected.
func TestLoginRateLimitPerAddress(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStack(t, func(c *app.Config, d *app.Deps) { d.Metrics = reg })
	s.client(t).signup("target")
	guesser := s.client(t)
	for i := range 30 {
		r := guesser.json("POST", "/api/v1/login", map[string]string{"handle": fmt.Sprintf("user%d", i), "password": "guess"})
		want(t, fmt.Sprintf("wrong log-in %d", i+1), r, http.StatusUnauthorized)
	}
	r := guesser.json("POST", "/api/v1/login", map[string]string{"handle": "target", "password": "correct horse"})
	wantTooMany(t, "the 31st log-in attempt", r)
	if got := rateLimited(t, reg, "login", "ip"); got != 1 {
		t.Errorf("scalestack_app_rate_limited_total{action=login,by=ip} = %v, want 1", got)
	}
	wantTooMany(t, "the log-in form after the burst", guesser.form("/login", "handle", "target", "password", "correct horse"))
	if got := s.App.Status().(app.Status).RateLimited["login/ip"]; got != 2 {
		t.Errorf("/status rate_limited login/ip = %d, want 2", got)
	}
	want(t, "log-in from the machine next door", s.client(t).json("POST", "/api/v1/login",
		map[string]string{"handle": "target", "password": "correct horse"}, from("192.0.2.7")...), http.StatusOK)
}

// A guesser spread over many addresses is stopped by the limit on failed
// log-ins per account; log-ins that succeed do not count towards it.
func TestLoginRateLimitPerAccount(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStack(t, func(c *app.Config, d *app.Deps) { d.Metrics = reg })
	s.client(t).signup("target")
	for i := range 15 {
		want(t, "a good log-in", s.client(t).json("POST", "/api/v1/login",
			map[string]string{"handle": "target", "password": "correct horse"}, from(fmt.Sprintf("198.51.100.%d", i))...), http.StatusOK)
	}
	for i := range 10 {
		want(t, "a wrong password", s.client(t).json("POST", "/api/v1/login",
			map[string]string{"handle": "TARGET", "password": "guess"}, from(fmt.Sprintf("203.0.113.%d", i))...), http.StatusUnauthorized)
	}
	r := s.client(t).json("POST", "/api/v1/login", map[string]string{"handle": "target", "password": "guess"}, from("203.0.113.200")...)
	wantTooMany(t, "the 11th wrong password for one account, from a new address", r)
	if got := rateLimited(t, reg, "login", "account"); got != 1 {
		t.Errorf("scalestack_app_rate_limited_total{action=login,by=account} = %v, want 1", got)
	}
	want(t, "a log-in to another account", s.client(t).json("POST", "/api/v1/login",
		map[string]string{"handle": "nobody", "password": "guess"}, from("203.0.113.201")...), http.StatusUnauthorized)
}

// X-Forwarded-For names the client only when the request came from a
// trusted proxy, and then only its right-most untrusted entry: a client
// cannot pick a new address for each attempt.
func TestRateLimitClientAddress(t *testing.T) {
	limits := func(c *app.Config, d *app.Deps) { c.RateLimits.SignupPerIP = app.Limit{Burst: 2, Every: time.Hour} }
	signup := func(c *client, handle string, header ...string) response {
		return c.json("POST", "/api/v1/signup", map[string]string{"handle": handle, "email": handle + "@example.com", "password": "correct horse"}, header...)
	}
	// The app port reached directly, not through a trusted proxy: the
	// header is ignored.
	direct := newStack(t, limits, func(c *app.Config, d *app.Deps) { c.TrustedProxies = nil })
	c := direct.client(t)
	want(t, "first sign-up", signup(c, "dir1", from("192.0.2.1")...), http.StatusCreated)
	want(t, "second sign-up", signup(c, "dir2", from("192.0.2.2")...), http.StatusCreated)
	wantTooMany(t, "third sign-up with yet another forged X-Forwarded-For", signup(c, "dir3", from("192.0.2.3")...))

	// Through the lb: the client may prepend what it likes; the lb's entry,
	// the right-most, is the one believed.
	proxied := newStack(t, limits)
	c = proxied.client(t)
	for i := range 2 {
		want(t, "sign-up through the lb", signup(c, fmt.Sprint("prox", i), from(fmt.Sprintf("10.9.9.%d, 192.0.2.50", i))...), http.StatusCreated)
	}
	wantTooMany(t, "third sign-up through the lb, a new address prepended", signup(c, "prox3", from("10.9.9.9, 192.0.2.50")...))
	want(t, "another client through the lb", signup(c, "prox4", from("192.0.2.51")...), http.StatusCreated)
	// Through the edge and then the lb, both trusted (loopback).
	want(t, "a client through the edge and the lb", signup(c, "prox5", from("192.0.2.60, 127.0.0.9")...), http.StatusCreated)
}

// Posting and commenting are limited per account (and per address): the
// next post or comment past the burst is a 429, on the API and the forms;
// another account is not affected.
func TestPostAndCommentRateLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newStack(t, func(c *app.Config, d *app.Deps) {
		d.Metrics = reg
		c.RateLimits.PostPerAccount = app.Limit{Burst: 3, Every: time.Hour}
		c.RateLimits.CommentPerAccount = app.Limit{Burst: 2, Every: time.Hour}
	})
	spammer := s.client(t)
	spammer.signup("spammer")
	var id string
	for i := range 3 {
		id = spammer.post(fmt.Sprint("Post ", i), "body")["id"].(string)
	}
	wantTooMany(t, "the 4th post", spammer.json("POST", "/api/v1/posts", map[string]any{"title": "Spam", "body": "spam"}))
	wantTooMany(t, "the 4th post by the form", spammer.multipart("/new", nil, "title", "Spam", "body", "spam", "published", "1"))
	for i := range 2 {
		want(t, "a comment", spammer.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": fmt.Sprint("comment ", i)}), http.StatusCreated)
	}
	wantTooMany(t, "the 3rd comment", spammer.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "spam"}))
	wantTooMany(t, "the 3rd comment by the form", spammer.form("/p/"+id+"/comments", "body", "spam"))
	if got := rateLimited(t, reg, "post", "account"); got != 2 {
		t.Errorf("scalestack_app_rate_limited_total{action=post,by=account} = %v, want 2", got)
	}
	if got := rateLimited(t, reg, "comment", "account"); got != 2 {
		t.Errorf("scalestack_app_rate_limited_total{action=comment,by=account} = %v, want 2", got)
	}
	other := s.client(t)
	other.signup("other")
	other.post("Not spam", "body")
	want(t, "another account's comment", other.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "hi"}), http.StatusCreated)
}

// RateLimit off: no limit at all.
func TestRateLimitOff(t *testing.T) {
	s := newStack(t, func(c *app.Config, d *app.Deps) { c.RateLimit = "off" })
	c := s.client(t)
	for range 40 {
		want(t, "log-in with rate limits off", c.json("POST", "/api/v1/login", map[string]string{"handle": "nobody", "password": "guess"}), http.StatusUnauthorized)
	}
}
