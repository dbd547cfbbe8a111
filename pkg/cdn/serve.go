package cdn

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

// serveObject answers a request from a stored response: 304 when the
// client's own validators match, a single byte range of a stored 200 when
// asked for one, headers only for HEAD, otherwise the whole stored response.
// setCookie goes to this client only (the one whose request drew it).
//
// This is the hit path. The header values are precomputed slices shared by
// every response of the object (net/http copies the header map when it
// writes, and never changes the slices), and the body is written in one
// call from the stored bytes.
func (e *Edge) serveObject(w http.ResponseWriter, r *http.Request, o *object, label []string, now time.Time, setCookie []string) {
	h := w.Header()
	for _, f := range o.fields {
		h[f.name] = f.values
	}
	h["Age"] = o.ageHeader(now)
	h["X-Cache"] = label
	h["X-Edge"] = e.xEdge
	if setCookie != nil {
		h["Set-Cookie"] = setCookie
	}
	rh := r.Header
	if (len(rh["If-None-Match"]) > 0 || len(rh["If-Modified-Since"]) > 0) && o.status == http.StatusOK &&
		httpcache.NotModified(rh, o.etag, o.lastModified) {
		// RFC 9110 §15.4.5: a 304 carries the fields a 200 would have
		// that describe caching, not the representation.
		delete(h, "Content-Length")
		delete(h, "Content-Type")
		delete(h, "Content-Encoding")
		delete(h, "Content-Language")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := o.body
	status := o.status
	if rg := rh["Range"]; len(rg) > 0 && r.Method == http.MethodGet && o.status == http.StatusOK {
		h["Accept-Ranges"] = []string{"bytes"}
		if httpcache.IfRangeMatch(rh.Get("If-Range"), o.etag, o.lastModified, o.date) {
			start, end, ok := parseRange(rg[0], int64(len(o.body)))
			switch {
			case ok && start < 0:
				h["Content-Range"] = []string{"bytes */" + strconv.Itoa(len(o.body))}
				delete(h, "Content-Length")
				http.Error(w, "edge: range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
				return
			case ok:
				body = o.body[start : end+1]
				status = http.StatusPartialContent
				h["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.Itoa(len(o.body))}
				h["Content-Length"] = []string{strconv.Itoa(len(body))}
			}
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || !bodyAllowed(status) {
		return
	}
	if n, err := w.Write(body); err == nil {
		e.bytesOut.Add(uint64(n))
	}
}

// parseRange parses a Range value of one byte range over a body of size
// bytes (RFC 9110 §14.1.2). ok is false when the value is not one
// well-formed byte range, in which case the whole body is served (a server
// may ignore Range). start is -1 when the range cannot be satisfied.
func parseRange(v string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" {
		// Suffix range: the last n bytes.
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		if n == 0 || size == 0 {
			return -1, 0, true
		}
		return max(0, size-n), size - 1, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false
	}
	e := size - 1
	if last != "" {
		e, err = strconv.ParseInt(last, 10, 64)
		if err != nil || e < s {
			return 0, 0, false
		}
		e = min(e, size-1)
	}
	if s >= size {
		return -1, 0, true
	}
	return s, e, true
}
