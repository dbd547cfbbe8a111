package httpcache_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		in   []string
		want string // normalised form
	}{
		{nil, ""},
		{[]string{"max-age=60"}, "max-age=60"},
		{[]string{"Max-Age=60, PUBLIC"}, "public, max-age=60"},
		{[]string{"public", "max-age=10"}, "public, max-age=10"},
		{[]string{"max-age=10, max-age=20"}, "max-age=10"},
		{[]string{`max-age="30"`}, "max-age=30"},
		{[]string{"max-age=abc"}, "max-age=0"},
		{[]string{"max-age=-1"}, "max-age=0"},
		{[]string{"max-age=99999999999999"}, "max-age=2147483648"},
		{[]string{"s-maxage=5, stale-while-revalidate=30, stale-if-error=600"}, "s-maxage=5, stale-while-revalidate=30, stale-if-error=600"},
		{[]string{`private="Set-Cookie, X-Foo", max-age=5`}, "private, max-age=5"},
		{[]string{`no-cache="Set-Cookie"`}, "no-cache"},
		{[]string{"no-store,no-transform ,must-revalidate"}, "no-store, no-transform, must-revalidate"},
		{[]string{"proxy-revalidate, immutable, must-understand"}, "proxy-revalidate, must-understand, immutable"},
		{[]string{"max-stale"}, "max-stale"},
		{[]string{"max-stale=5, min-fresh=2, only-if-cached"}, "only-if-cached, min-fresh=2, max-stale=5"},
		{[]string{"foo=bar, ,, public"}, "public"},
		{[]string{`ext="a,b", max-age=3`}, "max-age=3"},
	}
	for _, tt := range tests {
		got := httpcache.ParseCacheControl(tt.in).String()
		if got != tt.want {
			t.Errorf("ParseCacheControl(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		h             http.Header
		want          time.Duration
		wantHeuristic bool
	}{
		{"s-maxage over max-age", 200, hdr("Cache-Control", "max-age=10, s-maxage=20"), 20 * time.Second, false},
		{"max-age over Expires", 200, hdr("Cache-Control", "max-age=10", "Date", httpDate(t0), "Expires", httpDate(t0.Add(time.Hour))), 10 * time.Second, false},
		{"Expires minus Date", 200, hdr("Date", httpDate(t0), "Expires", httpDate(t0.Add(time.Hour))), time.Hour, false},
		{"Expires in the past", 200, hdr("Date", httpDate(t0), "Expires", httpDate(t0.Add(-time.Hour))), 0, false},
		{"invalid Expires is past", 200, hdr("Date", httpDate(t0), "Expires", "0"), 0, false},
		{"Expires blocks heuristic", 200, hdr("Date", httpDate(t0), "Expires", "0", "Last-Modified", httpDate(t0.Add(-100*time.Hour))), 0, false},
		{"heuristic 10%", 200, hdr("Date", httpDate(t0), "Last-Modified", httpDate(t0.Add(-10*time.Hour))), time.Hour, true},
		{"heuristic capped", 200, hdr("Date", httpDate(t0), "Last-Modified", httpDate(t0.Add(-1000*24*time.Hour))), httpcache.MaxHeuristic, true},
		{"heuristic 404", 404, hdr("Date", httpDate(t0), "Last-Modified", httpDate(t0.Add(-10*time.Hour))), time.Hour, true},
		{"no heuristic for 302", 302, hdr("Date", httpDate(t0), "Last-Modified", httpDate(t0.Add(-10*time.Hour))), 0, false},
		{"no heuristic for 500", 500, hdr("Date", httpDate(t0), "Last-Modified", httpDate(t0.Add(-10*time.Hour))), 0, false},
		{"explicit 302", 302, hdr("Cache-Control", "max-age=7"), 7 * time.Second, false},
		{"nothing", 200, hdr(), 0, false},
		{"missing Date uses now", 200, hdr("Expires", httpDate(t0.Add(time.Minute))), time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := httpcache.ParseCacheControl(tt.h["Cache-Control"])
			got, heur := httpcache.Lifetime(tt.status, tt.h, cc, t0)
			if got != tt.want || heur != tt.wantHeuristic {
				t.Fatalf("Lifetime = %v, %v; want %v, %v", got, heur, tt.want, tt.wantHeuristic)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	tests := []struct {
		name     string
		h        http.Header
		req, res time.Time
		want     time.Duration
	}{
		{"fresh from origin", hdr("Date", httpDate(t0)), t0, t0, 0},
		{"Age plus delay", hdr("Date", httpDate(t0), "Age", "30"), t0, t0.Add(2 * time.Second), 32 * time.Second},
		{"apparent age wins", hdr("Date", httpDate(t0.Add(-time.Minute))), t0, t0, time.Minute},
		{"clock skew ignored", hdr("Date", httpDate(t0.Add(time.Hour))), t0, t0, 0},
		{"bad Age", hdr("Date", httpDate(t0), "Age", "x"), t0, t0, 0},
	}
	for _, tt := range tests {
		if got := httpcache.InitialAge(tt.h, tt.req, tt.res); got != tt.want {
			t.Errorf("%s: InitialAge = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStorable(t *testing.T) {
	lm := httpDate(t0.Add(-time.Hour))
	tests := []struct {
		name   string
		req    http.Header
		status int
		h      http.Header
		want   bool
	}{
		{"max-age", hdr(), 200, hdr("Cache-Control", "max-age=60"), true},
		{"Expires", hdr(), 200, hdr("Expires", httpDate(t0)), true},
		{"Last-Modified only", hdr(), 200, hdr("Last-Modified", lm), true},
		{"nothing", hdr(), 200, hdr("ETag", `"a"`), false},
		{"public without freshness", hdr(), 200, hdr("Cache-Control", "public"), false},
		{"public 302 with Last-Modified", hdr(), 302, hdr("Cache-Control", "public", "Last-Modified", lm), true},
		{"302 with Last-Modified only", hdr(), 302, hdr("Last-Modified", lm), false},
		{"no-cache with validator", hdr(), 200, hdr("Cache-Control", "no-cache", "ETag", `"a"`), true},
		{"no-cache without validator", hdr(), 200, hdr("Cache-Control", "no-cache"), false},
		{"no-store", hdr(), 200, hdr("Cache-Control", "no-store, max-age=60"), false},
		{"request no-store", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), false},
		{"private", hdr(), 200, hdr("Cache-Control", "private, max-age=60"), false},
		{"qualified private", hdr(), 200, hdr("Cache-Control", `private="X-User", max-age=60`), false},
		{"authorization", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60"), false},
		{"authorization public", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "public, max-age=60"), true},
		{"authorization s-maxage", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "s-maxage=60"), true},
		{"authorization must-revalidate", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60, must-revalidate"), true},
		{"set-cookie", hdr(), 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "a=b"), false},
		{"set-cookie public", hdr(), 200, hdr("Cache-Control", "public, max-age=60", "Set-Cookie", "a=b"), true},
		{"vary star", hdr(), 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), false},
		{"vary", hdr(), 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept"), true},
		{"206", hdr(), 206, hdr("Cache-Control", "max-age=60"), false},
		{"304", hdr(), 304, hdr("Cache-Control", "max-age=60"), false},
		{"500 explicit", hdr(), 500, hdr("Cache-Control", "max-age=5"), true},
	}
	for _, tt := range tests {
		got, why := httpcache.Storable(tt.req, httpcache.ParseCacheControl(tt.req["Cache-Control"]), tt.status, tt.h, httpcache.ParseCacheControl(tt.h["Cache-Control"]))
		if got != tt.want {
			t.Errorf("%s: Storable = %v (%s), want %v", tt.name, got, why, tt.want)
		}
	}
}

func TestChoose(t *testing.T) {
	cc := func(s string) httpcache.Directives { return httpcache.ParseCacheControl([]string{s}) }
	s := time.Second
	tests := []struct {
		name          string
		req, resp     string
		pragma        bool
		lifetime, age time.Duration
		want          httpcache.Action
	}{
		{"fresh", "", "max-age=60", false, 60 * s, 10 * s, httpcache.Use},
		{"exactly expired", "", "max-age=60", false, 60 * s, 60 * s, httpcache.Validate},
		{"stale", "", "max-age=60", false, 60 * s, 61 * s, httpcache.Validate},
		{"swr window", "", "max-age=60, stale-while-revalidate=30", false, 60 * s, 80 * s, httpcache.UseStale},
		{"past swr window", "", "max-age=60, stale-while-revalidate=30", false, 60 * s, 91 * s, httpcache.Validate},
		{"swr but must-revalidate", "", "max-age=60, must-revalidate, stale-while-revalidate=30", false, 60 * s, 70 * s, httpcache.Validate},
		{"swr but s-maxage", "", "s-maxage=60, stale-while-revalidate=30", false, 60 * s, 70 * s, httpcache.Validate},
		{"swr but proxy-revalidate", "", "max-age=60, proxy-revalidate, stale-while-revalidate=30", false, 60 * s, 70 * s, httpcache.Validate},
		{"response no-cache", "", "no-cache, max-age=60", false, 60 * s, 0, httpcache.Validate},
		{"request no-cache", "no-cache", "max-age=60", false, 60 * s, 0, httpcache.Validate},
		{"pragma no-cache", "", "max-age=60", true, 60 * s, 0, httpcache.Validate},
		{"request max-age", "max-age=5", "max-age=60", false, 60 * s, 10 * s, httpcache.Validate},
		{"request max-age ok", "max-age=15", "max-age=60", false, 60 * s, 10 * s, httpcache.Use},
		{"request min-fresh", "min-fresh=55", "max-age=60", false, 60 * s, 10 * s, httpcache.Validate},
		{"request max-stale", "max-stale=10", "max-age=60", false, 60 * s, 65 * s, httpcache.Use},
		{"request max-stale too old", "max-stale=10", "max-age=60", false, 60 * s, 75 * s, httpcache.Validate},
		{"request max-stale any", "max-stale", "max-age=60", false, 60 * s, 1000 * s, httpcache.Use},
		{"max-stale vs must-revalidate", "max-stale", "max-age=60, must-revalidate", false, 60 * s, 61 * s, httpcache.Validate},
		{"immutable fresh", "", "max-age=31536000, immutable", false, 31536000 * s, s, httpcache.Use},
		{"immutable on reload", "max-age=0", "max-age=31536000, immutable", false, 31536000 * s, s, httpcache.Use},
		{"immutable on forced reload", "no-cache", "max-age=31536000, immutable", false, 31536000 * s, s, httpcache.Validate},
		{"immutable stale", "", "max-age=60, immutable", false, 60 * s, 61 * s, httpcache.Validate},
		{"max-age=0 on mutable", "max-age=0", "max-age=60", false, 60 * s, s, httpcache.Validate},
	}
	for _, tt := range tests {
		got := httpcache.Choose(cc(tt.req), cc(tt.resp), tt.pragma, tt.lifetime, tt.age)
		if got != tt.want {
			t.Errorf("%s: Choose = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStaleIfError(t *testing.T) {
	cc := func(s string) httpcache.Directives { return httpcache.ParseCacheControl([]string{s}) }
	s := time.Second
	tests := []struct {
		req, resp     string
		lifetime, age time.Duration
		want          bool
	}{
		{"", "max-age=10, stale-if-error=60", 10 * s, 30 * s, true},
		{"", "max-age=10, stale-if-error=60", 10 * s, 80 * s, false},
		{"", "max-age=10", 10 * s, 11 * s, false},
		{"stale-if-error=100", "max-age=10", 10 * s, 50 * s, true},
		{"", "max-age=10, must-revalidate, stale-if-error=60", 10 * s, 30 * s, false},
		{"", "s-maxage=10, stale-if-error=60", 10 * s, 30 * s, false},
	}
	for _, tt := range tests {
		if got := httpcache.StaleIfError(cc(tt.req), cc(tt.resp), tt.lifetime, tt.age); got != tt.want {
			t.Errorf("StaleIfError(req %q, resp %q, %v, %v) = %v, want %v", tt.req, tt.resp, tt.lifetime, tt.age, got, tt.want)
		}
	}
}

func TestVary(t *testing.T) {
	fields := httpcache.VaryFields(hdr("Vary", "accept-encoding, Accept", "Vary", "Accept-Encoding"))
	if got, want := len(fields), 2; got != want {
		t.Fatalf("VaryFields = %q, want 2 names", fields)
	}
	if fields[0] != "Accept" || fields[1] != "Accept-Encoding" {
		t.Fatalf("VaryFields = %q, want [Accept Accept-Encoding]", fields)
	}
	if got := httpcache.VaryFields(hdr("Vary", "Accept, *")); len(got) != 1 || got[0] != "*" {
		t.Fatalf("VaryFields(*) = %q, want [*]", got)
	}
	ae := []string{"Accept-Encoding"}
	gzip1 := httpcache.VaryKey(ae, hdr("Accept-Encoding", "gzip,br"))
	gzip2 := httpcache.VaryKey(ae, hdr("Accept-Encoding", "gzip, br"))
	plain := httpcache.VaryKey(ae, hdr())
	empty := httpcache.VaryKey(ae, hdr("Accept-Encoding", ""))
	if gzip1 != gzip2 {
		t.Errorf("VaryKey differs for %q and %q", "gzip,br", "gzip, br")
	}
	if gzip1 == plain || plain == empty || gzip1 == empty {
		t.Errorf("VaryKey does not separate gzip %q, absent %q, empty %q", gzip1, plain, empty)
	}
	if got := httpcache.VaryKey(nil, hdr("Accept", "x")); got != "" {
		t.Errorf("VaryKey(no fields) = %q, want empty", got)
	}
}

func TestNotModified(t *testing.T) {
	lm := httpDate(t0)
	tests := []struct {
		name     string
		req      http.Header
		etag, lm string
		want     bool
	}{
		{"etag match", hdr("If-None-Match", `"a"`), `"a"`, "", true},
		{"weak etag match", hdr("If-None-Match", `W/"a"`), `"a"`, "", true},
		{"etag in list", hdr("If-None-Match", `"x", "a"`), `W/"a"`, "", true},
		{"etag mismatch", hdr("If-None-Match", `"b"`), `"a"`, "", false},
		{"star", hdr("If-None-Match", "*"), "", "", true},
		{"inm decides over ims", hdr("If-None-Match", `"b"`, "If-Modified-Since", lm), `"a"`, lm, false},
		{"ims equal", hdr("If-Modified-Since", lm), "", lm, true},
		{"ims later", hdr("If-Modified-Since", httpDate(t0.Add(time.Hour))), "", lm, true},
		{"ims earlier", hdr("If-Modified-Since", httpDate(t0.Add(-time.Hour))), "", lm, false},
		{"ims bad date", hdr("If-Modified-Since", "yesterday"), "", lm, false},
		{"no conditionals", hdr(), `"a"`, lm, false},
	}
	for _, tt := range tests {
		if got := httpcache.NotModified(tt.req, tt.etag, tt.lm); got != tt.want {
			t.Errorf("%s: NotModified = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestIfRangeMatch(t *testing.T) {
	lm, date := httpDate(t0), httpDate(t0.Add(time.Hour))
	tests := []struct {
		ifRange, etag string
		want          bool
	}{
		{"", `"a"`, true},
		{`"a"`, `"a"`, true},
		{`"b"`, `"a"`, false},
		{`W/"a"`, `W/"a"`, false},
		{lm, "", true},
		{httpDate(t0.Add(time.Second)), "", false},
	}
	for _, tt := range tests {
		if got := httpcache.IfRangeMatch(tt.ifRange, tt.etag, lm, date); got != tt.want {
			t.Errorf("IfRangeMatch(%q, %q) = %v, want %v", tt.ifRange, tt.etag, got, tt.want)
		}
	}
}

func TestInvalidates(t *testing.T) {
	tests := []struct {
		method string
		status int
		want   bool
	}{
		{"POST", 201, true}, {"PUT", 204, true}, {"DELETE", 200, true}, {"PATCH", 303, true},
		{"POST", 404, false}, {"POST", 500, false}, {"GET", 200, false}, {"HEAD", 200, false},
	}
	for _, tt := range tests {
		if got := httpcache.Invalidates(tt.method, tt.status); got != tt.want {
			t.Errorf("Invalidates(%s, %d) = %v, want %v", tt.method, tt.status, got, tt.want)
		}
	}
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{
		"max-age=60", "public, s-maxage=10, stale-while-revalidate=5", `private="a,b", no-cache="c"`,
		"max-stale", "max-age=\"", "=,=,", `"`, "max-age=99999999999999999999", "no-store\t,\tMUST-REVALIDATE",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := httpcache.ParseCacheControl([]string{s})
		norm := d.String()
		d2 := httpcache.ParseCacheControl([]string{norm})
		if d2 != d {
			t.Fatalf("parse(%q) = %+v; parse of its normal form %q = %+v", s, d, norm, d2)
		}
		if again := d2.String(); again != norm {
			t.Fatalf("normal form of %q is %q, then %q: not idempotent", s, norm, again)
		}
	})
}
