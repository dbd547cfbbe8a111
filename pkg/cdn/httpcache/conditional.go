package httpcache

import (
	"net/http"
	"strings"
	"time"
)

// NotModified reports whether a client's conditional GET or HEAD is answered
// with 304 Not Modified by a stored response with the given ETag and
// Last-Modified values (RFC 9110 §13.1.2, §13.1.3, §13.2.2): If-None-Match,
// when present, decides alone, by weak comparison ("*" matches any stored
// response); otherwise If-Modified-Since matches when the stored response
// was last modified at or before it.
func NotModified(reqH http.Header, etag, lastModified string) bool {
	if inm := reqH["If-None-Match"]; len(inm) > 0 {
		for _, v := range inm {
			if ETagListMatch(v, etag) {
				return true
			}
		}
		return false
	}
	ims := reqH.Get("If-Modified-Since")
	if ims == "" || lastModified == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(lastModified)
	if err != nil {
		return false
	}
	return !lm.After(t)
}

// ETagListMatch reports whether the If-None-Match value list matches etag by
// weak comparison: the opaque tags are equal, W/ prefixes ignored. "*"
// matches any etag, even an empty one, since a stored response exists.
func ETagListMatch(list, etag string) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	if etag == "" {
		return false
	}
	want := weakOpaque(etag)
	for _, m := range splitList(list) {
		if m == "*" || weakOpaque(m) == want {
			return true
		}
	}
	return false
}

// StrongMatch reports whether two entity tags are equal by strong comparison:
// neither is weak and the opaque tags are equal.
func StrongMatch(a, b string) bool {
	return a != "" && a == b && !strings.HasPrefix(a, "W/")
}

func weakOpaque(t string) string {
	return strings.TrimPrefix(strings.TrimSpace(t), "W/")
}

// IfRangeMatch reports whether a Range request's If-Range condition holds
// for a stored response (RFC 9110 §13.1.5): an entity tag must match the
// stored one strongly; a date must equal the stored Last-Modified exactly,
// and that Last-Modified must be strong, here meaning at least a second
// before the response's Date. An empty If-Range always holds.
func IfRangeMatch(ifRange, etag, lastModified, date string) bool {
	if ifRange == "" {
		return true
	}
	if strings.HasPrefix(ifRange, `"`) || strings.HasPrefix(ifRange, "W/") {
		return StrongMatch(ifRange, etag)
	}
	t, err := http.ParseTime(ifRange)
	if err != nil || lastModified == "" {
		return false
	}
	lm, err := http.ParseTime(lastModified)
	if err != nil || !lm.Equal(t) {
		return false
	}
	d, err := http.ParseTime(date)
	return err == nil && d.Sub(lm) >= time.Second
}
