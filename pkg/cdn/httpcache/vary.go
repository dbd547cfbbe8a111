package httpcache

import (
	"net/http"
	"sort"
	"strings"
)

// VaryFields returns the canonical, sorted, deduplicated field names a
// response's Vary lists. A "*" is returned as the single name "*".
func VaryFields(h http.Header) []string {
	var names []string
	for _, v := range h["Vary"] {
		for _, f := range splitList(v) {
			if f == "*" {
				return []string{"*"}
			}
			names = append(names, http.CanonicalHeaderKey(f))
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	out := names[:1]
	for _, n := range names[1:] {
		if n != out[len(out)-1] {
			out = append(out, n)
		}
	}
	return out
}

// VaryKey is the secondary cache key of a request for a response that
// varies on fields (RFC 9111 §4.1): the request's values of each field,
// normalised by joining field lines with a comma and trimming blanks around
// list members, so that "gzip,br" and "gzip, br" select the same variant.
// An absent field and an empty one are told apart.
func VaryKey(fields []string, reqH http.Header) string {
	if len(fields) == 0 {
		return ""
	}
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(0)
		}
		vs, ok := reqH[f]
		if !ok {
			b.WriteByte(1) // absent
			continue
		}
		b.WriteByte(2)
		first := true
		for _, v := range vs {
			for _, m := range splitList(v) {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString(m)
			}
		}
	}
	return b.String()
}

// splitList splits a comma-separated field value into trimmed, non-empty
// members.
func splitList(v string) []string {
	var out []string
	for len(v) > 0 {
		var m string
		m, v, _ = strings.Cut(v, ",")
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}
