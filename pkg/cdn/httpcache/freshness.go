package httpcache

import (
	"net/http"
	"time"
)

// HeuristicFraction is the share of a response's age since Last-Modified
// that heuristic freshness grants it (RFC 9111 §4.2.2 suggests 10%).
const HeuristicFraction = 10

// MaxHeuristic caps heuristic freshness: a page unchanged for a year is
// still only fresh for a day without explicit freshness, as Squid and most
// browsers cap it.
const MaxHeuristic = 24 * time.Hour

// HeuristicallyCacheable reports whether status is cacheable by default
// (RFC 9110 §15.1): a response with it may get heuristic freshness.
func HeuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// Explicit reports whether the response states its own expiry: max-age,
// s-maxage or Expires.
func Explicit(cc Directives, h http.Header) bool {
	return cc.HasSMaxAge || cc.HasMaxAge || len(h["Expires"]) > 0
}

// Lifetime is the freshness lifetime of a response held by a shared cache
// (RFC 9111 §4.2.1): s-maxage, else max-age, else Expires minus Date, else
// a heuristic of HeuristicFraction percent of Date minus Last-Modified, up
// to MaxHeuristic, only for a status that is cacheable by default and only
// when the response has no explicit expiry. now stands in for a missing
// Date. heuristic reports that the heuristic was used.
func Lifetime(status int, h http.Header, cc Directives, now time.Time) (lifetime time.Duration, heuristic bool) {
	switch {
	case cc.HasSMaxAge:
		return cc.SMaxAge, false
	case cc.HasMaxAge:
		return cc.MaxAge, false
	}
	date := dateOr(h, now)
	if ev := h["Expires"]; len(ev) > 0 {
		// An invalid Expires, "0" included, is a time in the past
		// (RFC 9111 §5.3).
		exp, err := http.ParseTime(ev[0])
		if err != nil || !exp.After(date) {
			return 0, false
		}
		return exp.Sub(date), false
	}
	if !HeuristicallyCacheable(status) {
		return 0, false
	}
	lmv := h.Get("Last-Modified")
	if lmv == "" {
		return 0, false
	}
	lm, err := http.ParseTime(lmv)
	if err != nil || !lm.Before(date) {
		return 0, true
	}
	return min(date.Sub(lm)/HeuristicFraction, MaxHeuristic), true
}

// dateOr is the response's Date, or now when it has none or it is invalid.
func dateOr(h http.Header, now time.Time) time.Time {
	if dv := h["Date"]; len(dv) > 0 {
		if d, err := http.ParseTime(dv[0]); err == nil {
			return d
		}
	}
	return now
}

// InitialAge is a response's corrected initial age when the cache received
// it (RFC 9111 §4.2.3): the larger of its apparent age (response time minus
// Date) and its Age field plus the time the request took. The current age is
// then the initial age plus the time the response has been held.
func InitialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	apparent := max(0, responseTime.Sub(dateOr(h, responseTime)))
	var ageValue time.Duration
	if av := h["Age"]; len(av) > 0 {
		ageValue = parseDelta(av[0])
	}
	corrected := ageValue + max(0, responseTime.Sub(requestTime))
	return max(apparent, corrected)
}

// Storable reports whether a shared cache may store a response to a GET
// request, and if not, why (RFC 9111 §3, §3.5). Beyond the standard it
// stores nothing without a reason to: the response must carry an explicit
// expiry, or a Last-Modified on which heuristic freshness can rest, or
// no-cache together with a validator (stored to be revalidated cheaply).
// A response that sets a cookie is stored only when it says public, so that
// a cookie meant for one client is never a reason to keep a page; the cache
// strips Set-Cookie from what it stores.
func Storable(reqH http.Header, reqCC Directives, status int, h http.Header, cc Directives) (ok bool, reason string) {
	switch {
	case status < 200 || status == 206 || status == 304 || status >= 600:
		return false, "status"
	case reqCC.NoStore:
		return false, "request no-store"
	case cc.NoStore:
		return false, "no-store"
	case cc.Private:
		return false, "private"
	case len(reqH["Authorization"]) > 0 && !cc.Public && !cc.HasSMaxAge && !cc.MustRevalidate:
		return false, "authorization"
	case len(h["Set-Cookie"]) > 0 && !cc.Public:
		return false, "set-cookie"
	}
	for _, v := range h["Vary"] {
		for _, f := range splitList(v) {
			if f == "*" {
				return false, "vary *"
			}
		}
	}
	if Explicit(cc, h) {
		return true, ""
	}
	validator := h.Get("ETag") != "" || h.Get("Last-Modified") != ""
	if cc.NoCache && validator && HeuristicallyCacheable(status) {
		return true, ""
	}
	if h.Get("Last-Modified") != "" && (HeuristicallyCacheable(status) || cc.Public) {
		return true, ""
	}
	return false, "no freshness information"
}

// MayServeStale reports whether the response allows a shared cache to use it
// once stale, in any circumstance (RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8,
// §5.2.2.10): not with must-revalidate, proxy-revalidate, s-maxage (which
// implies proxy-revalidate) or no-cache.
func MayServeStale(cc Directives) bool {
	return !cc.MustRevalidate && !cc.ProxyRevalidate && !cc.HasSMaxAge && !cc.NoCache
}

// Action is what a cache does with a stored response for a request.
type Action int

const (
	// Use: the stored response is fresh enough; serve it.
	Use Action = iota + 1
	// UseStale: serve the stale response now and revalidate it in the
	// background (stale-while-revalidate, RFC 5861 §3).
	UseStale
	// Validate: ask the origin first, with a conditional request.
	Validate
)

func (a Action) String() string {
	switch a {
	case Use:
		return "use"
	case UseStale:
		return "use-stale"
	case Validate:
		return "validate"
	}
	return "unknown"
}

// Choose decides what to do with a stored response of the given freshness
// lifetime and current age for a request with directives req
// (pragmaNoCache: the request has Pragma: no-cache and no Cache-Control).
// It honours the request's no-cache, max-age, min-fresh and max-stale
// (RFC 9111 §5.2.1), the response's no-cache and revalidation directives,
// and the response's stale-while-revalidate window. A fresh immutable
// response (RFC 8246) is used even for a request's max-age=0, which is what
// browsers send on a plain reload; no-cache (a forced reload) still
// validates.
func Choose(req, resp Directives, pragmaNoCache bool, lifetime, age time.Duration) Action {
	if resp.NoCache || req.NoCache || pragmaNoCache {
		return Validate
	}
	remaining := lifetime - age
	if resp.Immutable && remaining > 0 && !req.HasMinFresh {
		return Use
	}
	if req.HasMaxAge && age > req.MaxAge {
		return Validate
	}
	if req.HasMinFresh && remaining < req.MinFresh {
		return Validate
	}
	if remaining > 0 {
		return Use
	}
	if !MayServeStale(resp) {
		return Validate
	}
	stale := -remaining
	if req.HasMaxStale && (req.MaxStaleAny || stale <= req.MaxStale) {
		return Use
	}
	if resp.HasStaleWhileRevalidate && stale <= resp.StaleWhileRevalidate && !req.HasMaxAge && !req.HasMinFresh {
		return UseStale
	}
	return Validate
}

// StaleIfError reports whether a stale response may stand in for an origin
// that failed (a connection error, or a 500, 502, 503 or 504), as
// stale-if-error in the response or in the request permits (RFC 5861 §4).
func StaleIfError(req, resp Directives, lifetime, age time.Duration) bool {
	if !MayServeStale(resp) {
		return false
	}
	stale := age - lifetime
	if resp.HasStaleIfError && stale <= resp.StaleIfError {
		return true
	}
	return req.HasStaleIfError && stale <= req.StaleIfError
}

// Invalidates reports whether a response to a request with this method makes
// a cache invalidate the target URI (RFC 9111 §4.4): an unsafe method
// answered with a non-error status (2xx or 3xx).
func Invalidates(method string, status int) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return status >= 200 && status < 400
}
