package cdn

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn/httpcache"
)

// object is one stored response: one variant of one URL. It is immutable
// once stored (a 304 makes a new object that shares the body), so the hit
// path reads it without a lock.
type object struct {
	key     string // LRU key: uri, or uri NUL vary key for a varying URL
	uri     string // the URL's path and query, the primary key
	vary    []string
	varyKey string
	tags    []string // surrogate keys

	status int
	header http.Header // stored fields; hop-by-hop, Set-Cookie, Surrogate-Key and Age removed
	body   []byte

	cc           httpcache.Directives
	etag         string
	lastModified string
	date         string
	requestTime  time.Time
	responseTime time.Time
	initialAge   time.Duration
	lifetime     time.Duration

	// fields is what the hit path copies into the response header: the
	// stored fields, Via with this edge appended and Content-Length,
	// computed once at store time.
	fields []field
	// wire is the response head the server's hit path writes: status
	// line, fields and X-Edge, without Age, X-Cache and the final CRLF.
	wire []byte
	// age caches the last Age value written, so that the hit path formats
	// it once per second rather than once per request.
	age atomic.Pointer[ageValue]
	// size is what the object costs in the byte budget, before the LRU's
	// own per-entry overhead.
	size int64
}

type field struct {
	name   string
	values []string
}

type ageValue struct {
	secs int64
	v    []string
}

// newObject builds the stored form of a response to the GET of uri made by
// a request with header reqH.
func newObject(uri string, reqH http.Header, status int, h http.Header, body []byte, requestTime, responseTime time.Time, node string) *object {
	via := "1.1 " + node
	stored := make(http.Header, len(h))
	for k, v := range h {
		stored[k] = v
	}
	removeHopByHop(stored)
	delete(stored, "Set-Cookie")
	delete(stored, "Age")
	delete(stored, "X-Cache")
	delete(stored, "X-Edge")
	// The ids of the exchange that filled the object, not of the requests
	// the object will answer.
	delete(stored, "X-Request-Id")
	delete(stored, "X-Trace-Id")
	tags := surrogateKeys(stored)
	delete(stored, "Surrogate-Key")
	delete(stored, "Content-Length")

	o := &object{
		uri:          uri,
		tags:         tags,
		status:       status,
		header:       stored,
		body:         body,
		cc:           httpcache.ParseCacheControl(stored["Cache-Control"]),
		etag:         stored.Get("Etag"),
		lastModified: stored.Get("Last-Modified"),
		date:         stored.Get("Date"),
		requestTime:  requestTime,
		responseTime: responseTime,
		initialAge:   httpcache.InitialAge(h, requestTime, responseTime),
	}
	o.lifetime, _ = httpcache.Lifetime(status, stored, o.cc, responseTime)
	o.vary = httpcache.VaryFields(stored)
	o.varyKey = httpcache.VaryKey(o.vary, reqH)
	o.key = objectKey(uri, o.vary, o.varyKey)

	o.fields = make([]field, 0, len(stored)+2)
	o.size = int64(len(o.key)) + int64(cap(body)) + 64
	for k, v := range stored {
		if k == "Via" {
			continue
		}
		o.fields = append(o.fields, field{k, v})
		o.size += int64(len(k)) + 16
		for _, s := range v {
			o.size += int64(len(s)) + 16
		}
	}
	o.fields = append(o.fields, field{"Via", appendVia(stored["Via"], via)})
	if bodyAllowed(status) {
		o.fields = append(o.fields, field{"Content-Length", []string{strconv.Itoa(len(body))}})
	}
	o.wire = o.appendWire(nil, node)
	o.size += int64(cap(o.wire))
	return o
}

// appendWire appends the object's HTTP/1.1 status line and fields to b.
func (o *object) appendWire(b []byte, node string) []byte {
	text := http.StatusText(o.status)
	if text == "" {
		text = "status"
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(o.status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\n"...)
	for _, f := range o.fields {
		for _, v := range f.values {
			if containsCRLF(f.name) || containsCRLF(v) {
				continue
			}
			b = append(b, f.name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "X-Edge: "...)
	b = append(b, node...)
	b = append(b, "\r\n"...)
	return b
}

// updated returns the object that results from a 304 Not Modified with
// header h (RFC 9111 §4.3.4, §3.2): the stored fields replaced by those the
// 304 carries, except Content-Length, with the body shared.
func (o *object) updated(reqH http.Header, h http.Header, requestTime, responseTime time.Time, node string) *object {
	merged := make(http.Header, len(o.header)+len(h))
	for k, v := range o.header {
		merged[k] = v
	}
	fresh := h.Clone()
	removeHopByHop(fresh)
	delete(fresh, "Content-Length")
	for k, v := range fresh {
		merged[k] = v
	}
	// Age belongs to the 304 alone: newObject reads it for the initial age.
	if av, ok := h["Age"]; ok {
		merged["Age"] = av
	}
	// Surrogate keys are kept unless the 304 restates them.
	if _, ok := merged["Surrogate-Key"]; !ok && len(o.tags) > 0 {
		merged["Surrogate-Key"] = []string{strings.Join(o.tags, " ")}
	}
	return newObject(o.uri, reqH, o.status, merged, o.body, requestTime, responseTime, node)
}

// currentAge is the object's age at now (RFC 9111 §4.2.3).
func (o *object) currentAge(now time.Time) time.Duration {
	return o.initialAge + max(0, now.Sub(o.responseTime))
}

// ageHeader is the Age field value at now, shared between the requests of
// one second.
func (o *object) ageHeader(now time.Time) []string {
	secs := int64(o.currentAge(now) / time.Second)
	if a := o.age.Load(); a != nil && a.secs == secs {
		return a.v
	}
	a := &ageValue{secs: secs, v: []string{strconv.FormatInt(secs, 10)}}
	o.age.Store(a)
	return a.v
}

// staleDeadline is when the object stops being of any use: past its
// freshness, its stale-while-revalidate and stale-if-error windows, and
// keepStale more if it can be revalidated. Zero means it has no use at all.
func (o *object) staleDeadline(keepStale time.Duration) time.Time {
	end := o.responseTime.Add(o.lifetime - o.initialAge)
	var extra time.Duration
	if httpcache.MayServeStale(o.cc) {
		if o.cc.HasStaleWhileRevalidate {
			extra = o.cc.StaleWhileRevalidate
		}
		if o.cc.HasStaleIfError {
			extra = max(extra, o.cc.StaleIfError)
		}
	}
	if o.etag != "" || o.lastModified != "" {
		extra += keepStale
	}
	return end.Add(extra)
}

// matches reports whether the object is the variant selected by a request
// with header reqH.
func (o *object) matches(reqH http.Header) bool {
	return len(o.vary) == 0 || httpcache.VaryKey(o.vary, reqH) == o.varyKey
}

func objectKey(uri string, vary []string, varyKey string) string {
	if len(vary) == 0 {
		return uri
	}
	return uri + "\x00" + varyKey
}

// surrogateKeys returns the space-separated keys of every Surrogate-Key line.
func surrogateKeys(h http.Header) []string {
	var keys []string
	for _, v := range h["Surrogate-Key"] {
		keys = append(keys, strings.Fields(v)...)
	}
	return keys
}

// bodyAllowed reports whether a response with this status has a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != 204 && status != 304
}

// hopByHop lists the fields that belong to one connection (RFC 9110 §7.6.1)
// and are never forwarded or stored.
var hopByHop = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, c := range h["Connection"] {
		for _, f := range strings.Split(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	for _, f := range hopByHop {
		delete(h, f)
	}
}

// appendVia adds this hop to a Via field.
func appendVia(prev []string, via string) []string {
	if len(prev) == 0 {
		return []string{via}
	}
	return []string{strings.Join(prev, ", ") + ", " + via}
}
