package httpcache

import (
	"strconv"
	"strings"
	"time"
)

// maxDelta is the largest delta-seconds value kept. RFC 9111 §1.2.2 asks a
// recipient to use 2^31 for any value that does not fit, and to never treat
// an overflow as a small number.
const maxDelta = 2147483648 * time.Second

// Directives is a parsed Cache-Control field, from a request or a response.
// Durations are whole seconds. A Has flag says whether a directive with an
// argument was present, since zero is a meaningful value (max-age=0).
//
// Qualified forms (no-cache="Set-Cookie", private="X") are treated as their
// unqualified forms, which RFC 9111 §5.2.2.4 and §5.2.2.7 allow a cache to
// do and which is the more conservative reading. Unknown extensions are
// dropped.
type Directives struct {
	Public          bool
	Private         bool
	NoCache         bool
	NoStore         bool
	NoTransform     bool
	MustRevalidate  bool
	ProxyRevalidate bool
	MustUnderstand  bool
	Immutable       bool
	OnlyIfCached    bool

	HasMaxAge               bool
	MaxAge                  time.Duration
	HasSMaxAge              bool
	SMaxAge                 time.Duration
	HasStaleWhileRevalidate bool
	StaleWhileRevalidate    time.Duration
	HasStaleIfError         bool
	StaleIfError            time.Duration
	HasMinFresh             bool
	MinFresh                time.Duration
	// HasMaxStale with MaxStaleAny means a bare max-stale: any staleness.
	HasMaxStale bool
	MaxStaleAny bool
	MaxStale    time.Duration
}

// ParseCacheControl parses the values of every Cache-Control field line of
// a message (as http.Header holds them). Directive names are matched without
// regard to case. When a directive appears twice, the first occurrence wins
// (RFC 9111 §4.2.1). A delta-seconds argument that is not a number counts as
// 0, so a malformed max-age makes a response stale rather than fresh
// forever; a bare max-stale accepts any staleness.
func ParseCacheControl(values []string) Directives {
	var d Directives
	for _, v := range values {
		for len(v) > 0 {
			var name, arg string
			var hasArg bool
			name, arg, hasArg, v = nextDirective(v)
			if name == "" {
				continue
			}
			d.apply(name, arg, hasArg)
		}
	}
	return d
}

// nextDirective cuts the first directive off s: its lowercased name, its
// argument with quotes removed, and the rest of s after the next comma that
// is not inside a quoted string.
func nextDirective(s string) (name, arg string, hasArg bool, rest string) {
	i := 0
	for i < len(s) && s[i] != ',' && s[i] != '=' {
		i++
	}
	name = strings.ToLower(strings.TrimSpace(s[:i]))
	if i == len(s) {
		return name, "", false, ""
	}
	if s[i] == ',' {
		return name, "", false, s[i+1:]
	}
	// s[i] == '='
	j := i + 1
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j < len(s) && s[j] == '"' {
		var b strings.Builder
		k := j + 1
		for k < len(s) && s[k] != '"' {
			if s[k] == '\\' && k+1 < len(s) {
				k++
			}
			b.WriteByte(s[k])
			k++
		}
		arg = b.String()
		// Skip the closing quote and anything up to the next comma.
		for k < len(s) && s[k] != ',' {
			k++
		}
		if k < len(s) {
			k++
		}
		return name, arg, true, s[k:]
	}
	k := j
	for k < len(s) && s[k] != ',' {
		k++
	}
	arg = strings.TrimSpace(s[j:k])
	if k < len(s) {
		k++
	}
	return name, arg, true, s[k:]
}

func (d *Directives) apply(name, arg string, hasArg bool) {
	switch name {
	case "public":
		d.Public = true
	case "private":
		d.Private = true
	case "no-cache":
		d.NoCache = true
	case "no-store":
		d.NoStore = true
	case "no-transform":
		d.NoTransform = true
	case "must-revalidate":
		d.MustRevalidate = true
	case "proxy-revalidate":
		d.ProxyRevalidate = true
	case "must-understand":
		d.MustUnderstand = true
	case "immutable":
		d.Immutable = true
	case "only-if-cached":
		d.OnlyIfCached = true
	case "max-age":
		if !d.HasMaxAge {
			d.HasMaxAge, d.MaxAge = true, parseDelta(arg)
		}
	case "s-maxage":
		if !d.HasSMaxAge {
			d.HasSMaxAge, d.SMaxAge = true, parseDelta(arg)
		}
	case "stale-while-revalidate":
		if !d.HasStaleWhileRevalidate {
			d.HasStaleWhileRevalidate, d.StaleWhileRevalidate = true, parseDelta(arg)
		}
	case "stale-if-error":
		if !d.HasStaleIfError {
			d.HasStaleIfError, d.StaleIfError = true, parseDelta(arg)
		}
	case "min-fresh":
		if !d.HasMinFresh {
			d.HasMinFresh, d.MinFresh = true, parseDelta(arg)
		}
	case "max-stale":
		if !d.HasMaxStale {
			d.HasMaxStale = true
			if hasArg {
				d.MaxStale = parseDelta(arg)
			} else {
				d.MaxStaleAny = true
			}
		}
	}
}

// parseDelta parses delta-seconds (RFC 9111 §1.2.2): digits only; anything
// else is 0, and values past 2^31 are 2^31.
func parseDelta(s string) time.Duration {
	if s == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
		if n > int64(maxDelta/time.Second) {
			return maxDelta
		}
	}
	return time.Duration(n) * time.Second
}

// String is the normalised form of d: known directives in a fixed order,
// lowercase, arguments as whole seconds. Parsing it gives d back.
func (d Directives) String() string {
	var b strings.Builder
	flag := func(on bool, name string) {
		if on {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
		}
	}
	delta := func(on bool, name string, v time.Duration) {
		if on {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(strconv.FormatInt(int64(v/time.Second), 10))
		}
	}
	flag(d.Public, "public")
	flag(d.Private, "private")
	flag(d.NoCache, "no-cache")
	flag(d.NoStore, "no-store")
	flag(d.NoTransform, "no-transform")
	flag(d.MustRevalidate, "must-revalidate")
	flag(d.ProxyRevalidate, "proxy-revalidate")
	flag(d.MustUnderstand, "must-understand")
	flag(d.Immutable, "immutable")
	flag(d.OnlyIfCached, "only-if-cached")
	delta(d.HasMaxAge, "max-age", d.MaxAge)
	delta(d.HasSMaxAge, "s-maxage", d.SMaxAge)
	delta(d.HasStaleWhileRevalidate, "stale-while-revalidate", d.StaleWhileRevalidate)
	delta(d.HasStaleIfError, "stale-if-error", d.StaleIfError)
	delta(d.HasMinFresh, "min-fresh", d.MinFresh)
	if d.HasMaxStale {
		if d.MaxStaleAny {
			flag(true, "max-stale")
		} else {
			delta(true, "max-stale", d.MaxStale)
		}
	}
	return b.String()
}
