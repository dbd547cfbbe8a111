package httpwire_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/httpwire"
)

func parseRequest(t testing.TB, raw string) (*httpwire.Head, error) {
	t.Helper()
	h := &httpwire.Head{}
	err := httpwire.ReadHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, false)
	return h, err
}

func TestReadRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr error
		check   func(t *testing.T, h *httpwire.Head)
	}{
		{name: "simple", raw: "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if got := string(h.First[0].Of(h.Buf)) + " " + string(h.First[1].Of(h.Buf)); got != "GET /a?b=1" {
				t.Errorf("request line = %q", got)
			}
			if h.ContentLength != -1 || h.Chunked || h.HTTP10 {
				t.Errorf("framing = %d %v %v, want none", h.ContentLength, h.Chunked, h.HTTP10)
			}
		}},
		{name: "leading CRLF and bare LF", raw: "\r\nPOST / HTTP/1.1\nHost: x\nContent-Length: 5\n\n", check: func(t *testing.T, h *httpwire.Head) {
			if h.ContentLength != 5 {
				t.Errorf("Content-Length = %d, want 5", h.ContentLength)
			}
		}},
		{name: "connection tokens", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nx-hop: 1\r\nX-Keep: 2\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if !h.Close {
				t.Errorf("connClose = false")
			}
			hops := ""
			for _, f := range h.Fields {
				if f.Hop {
					hops += string(f.Name.Of(h.Buf)) + ","
				}
			}
			if hops != "Connection,x-hop," {
				t.Errorf("hop fields = %q, want Connection,x-hop,", hops)
			}
		}},
		{name: "http 1.0 without host", raw: "GET / HTTP/1.0\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if !h.HTTP10 {
				t.Errorf("http10 = false")
			}
		}},
		{name: "chunked", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if !h.Chunked {
				t.Errorf("chunked = false")
			}
		}},
		{name: "same length twice", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"},
		{name: "smuggling CL and TE", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: httpwire.ErrBothFramings},
		{name: "conflicting lengths", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", wantErr: httpwire.ErrBadLength},
		{name: "signed length", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", wantErr: httpwire.ErrBadLength},
		{name: "gzip coding", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", wantErr: httpwire.ErrBadCoding},
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "stray CR", raw: "GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "no host", raw: "GET / HTTP/1.1\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "two hosts", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\n", wantErr: httpwire.ErrBadVersion},
		{name: "extra space", raw: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "garbage", raw: "HELLO\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "unknown coding", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", wantErr: httpwire.ErrBadCoding},
		{name: "chunked twice", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: httpwire.ErrBadCoding},
		{name: "NUL in a value", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "method not a token", raw: "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "obs-fold with a tab", raw: "GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "no target", raw: "GET HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: httpwire.ErrMalformed},
		{name: "http 1.0 with keep-alive", raw: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if !h.HTTP10 || !h.KeepAlive || h.Close {
				t.Errorf("HTTP10, KeepAlive, Close = %v, %v, %v; want true, true, false", h.HTTP10, h.KeepAlive, h.Close)
			}
		}},
		{name: "expect 100-continue", raw: "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-Continue\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if !h.Expect100 || h.ContentLength != 2 {
				t.Errorf("Expect100, ContentLength = %v, %d; want true, 2", h.Expect100, h.ContentLength)
			}
		}},
		{name: "white space around values", raw: "GET / HTTP/1.1\r\nHost:\t x \t\r\nX-Empty:\r\n\r\n", check: func(t *testing.T, h *httpwire.Head) {
			if got := string(h.Host.Of(h.Buf)); got != "x" {
				t.Errorf("Host = %q, want x", got)
			}
			if got := string(h.Fields[1].Value.Of(h.Buf)); got != "" {
				t.Errorf("X-Empty = %q, want empty", got)
			}
		}},
		{name: "too large", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", wantErr: httpwire.ErrHeadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseRequest(t, tt.raw)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("httpwire.ReadHead = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("httpwire.ReadHead = %v", err)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
		})
	}
}

// TestBothFramingsHeadIsWhole checks that a head with both Content-Length
// and Transfer-Encoding is refused only after it has been parsed whole: the
// edge takes ErrBothFramings as "decode chunked, then close".
func TestBothFramingsHeadIsWhole(t *testing.T) {
	h, err := parseRequest(t, "POST /p HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nHost: x\r\nX-After: 1\r\n\r\n")
	if !errors.Is(err, httpwire.ErrBothFramings) {
		t.Fatalf("err = %v, want ErrBothFramings", err)
	}
	if !h.Chunked || h.ContentLength != 3 || !h.HasHost || len(h.Fields) != 4 {
		t.Errorf("Chunked %v, ContentLength %d, HasHost %v, %d fields; want true, 3, true, 4", h.Chunked, h.ContentLength, h.HasHost, len(h.Fields))
	}
	// A missing Host is the worse fault, and is what a server answers.
	if _, err := parseRequest(t, "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"); !errors.Is(err, httpwire.ErrMalformed) {
		t.Errorf("without Host: err = %v, want ErrMalformed", err)
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		want httpwire.Kind
	}{
		{"Content-Length", httpwire.FieldContentLength},
		{"transfer-encoding", httpwire.FieldTransferEncoding},
		{"CONNECTION", httpwire.FieldConnection},
		{"Keep-Alive", httpwire.FieldHopByHop},
		{"TE", httpwire.FieldHopByHop},
		{"Trailer", httpwire.FieldHopByHop},
		{"Proxy-Authorization", httpwire.FieldHopByHop},
		{"Upgrade", httpwire.FieldUpgrade},
		{"Host", httpwire.FieldHost},
		{"Expect", httpwire.FieldExpect},
		{"X-Forwarded-For", httpwire.FieldXForwardedFor},
		{"X-Forwarded-Proto", httpwire.FieldXForwardedProto},
		{"X-Request-ID", httpwire.FieldXRequestID},
		{"Via", httpwire.FieldVia},
		{"Cookie", httpwire.FieldCookie},
		{"Set-Cookie", httpwire.FieldSetCookie},
		{"Idempotency-Key", httpwire.FieldIdempotencyKey},
		{"Accept", httpwire.FieldAccept},
		{"Content-Type", httpwire.FieldContentType},
		{"Retry-After", httpwire.FieldRetryAfter},
		{"If-None-Match", httpwire.FieldConditional},
		{"If-Match", httpwire.FieldConditional},
		{"If-Modified-Since", httpwire.FieldConditional},
		{"If-Unmodified-Since", httpwire.FieldConditional},
		{"If-Range", httpwire.FieldConditional},
		{"Range", httpwire.FieldRange},
		{"Cache-Control", httpwire.FieldCacheControl},
		{"Pragma", httpwire.FieldPragma},
		{"Traceparent", httpwire.FieldTraceparent},
		{"tracestate", httpwire.FieldTracestate},
		{"X-Other", httpwire.FieldOther},
		{"Hosts", httpwire.FieldOther},
		{"Proxy", httpwire.FieldOther},
	}
	for _, tt := range tests {
		if got := httpwire.KindOf([]byte(tt.name)); got != tt.want {
			t.Errorf("KindOf(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestHopFields(t *testing.T) {
	h, err := parseRequest(t, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nTE: trailers\r\nContent-Length: 0\r\nX-End: 1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	hops := ""
	for _, f := range h.Fields {
		if f.Hop {
			hops += string(f.Name.Of(h.Buf)) + ","
		}
	}
	if want := "Upgrade,TE,Content-Length,"; hops != want {
		t.Errorf("hop fields = %q, want %q", hops, want)
	}
}

func TestReadResponseHead(t *testing.T) {
	h := &httpwire.Head{}
	raw := "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
	if err := httpwire.ReadHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, true); err != nil {
		t.Fatal(err)
	}
	if h.Status != 404 || string(h.Rest.Of(h.Buf)) != "404 Not Found" || h.ContentLength != 3 {
		t.Errorf("status %d rest %q length %d, want 404, %q, 3", h.Status, h.Rest.Of(h.Buf), h.ContentLength, "404 Not Found")
	}
	raw = "HTTP/1.1 503 Service Unavailable\r\nretry-AFTER: 2\r\nContent-Length: 0\r\n\r\n"
	if err := httpwire.ReadHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, true); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.Value(httpwire.FieldRetryAfter); !ok || string(v) != "2" {
		t.Errorf("field(httpwire.FieldRetryAfter) = %q, %v; want \"2\", true", v, ok)
	}
	if err := httpwire.ReadHead(bufio.NewReader(strings.NewReader("HTTP/1.1 20 OK\r\n\r\n")), h, 8<<10, true); !errors.Is(err, httpwire.ErrMalformed) {
		t.Errorf("two-digit status: err = %v, want httpwire.ErrMalformed", err)
	}
}

// FuzzReadHead checks that any input either fails cleanly or yields a httpwire.Head
// whose parts lie within its buffer and whose framing is unambiguous.
func FuzzReadHead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
	f.Add("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n", false)
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true)
	f.Add("HTTP/1.0 204\r\n\r\n", true)
	// The edge's former parser's seeds.
	for _, s := range []string{
		"GET /a?b=c HTTP/1.0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\nHost: y\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, raw string, response bool) {
		h := &httpwire.Head{}
		err := httpwire.ReadHead(bufio.NewReader(strings.NewReader(raw)), h, 4<<10, response)
		if err != nil {
			return
		}
		n := int32(len(h.Buf))
		in := func(s httpwire.Span) bool { return 0 <= s.Start && s.Start <= s.End && s.End <= n }
		for _, s := range append(h.First[:], h.Host) {
			if !in(s) {
				t.Fatalf("httpwire.Span %v outside buffer of %d", s, n)
			}
		}
		for _, fl := range h.Fields {
			if !in(fl.Line) || !in(fl.Name) || !in(fl.Value) {
				t.Fatalf("field spans %+v outside buffer of %d", fl, n)
			}
			if bytes.ContainsAny(fl.Line.Of(h.Buf), "\r\n\x00") {
				t.Fatalf("field line %q holds CR, LF or NUL", fl.Line.Of(h.Buf))
			}
		}
		if !response && (h.First[0].Start == h.First[0].End || h.First[1].Start == h.First[1].End) {
			t.Fatalf("accepted %q with an empty method or target", raw)
		}
		if h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("both chunked and Content-Length %d accepted", h.ContentLength)
		}
	})
}

// compareParseHead compares httpwire.ParseHead with httpwire.ReadHead from a reader of
// lineSize bytes, heads limited to 1 KiB.
func compareParseHead(t *testing.T, raw string, response bool, lineSize int) {
	const max = 1 << 10
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, lineSize)
	want := &httpwire.Head{}
	werr := httpwire.ReadHead(br, want, max, response)
	used := len(raw) - sr.Len() - br.Buffered()
	got := &httpwire.Head{}
	n, gerr := httpwire.ParseHead([]byte(raw), got, max, lineSize, response)
	switch {
	case werr == nil:
		if gerr != nil || n != used || string(got.Buf) != string(want.Buf) {
			t.Fatalf("lines %d: httpwire.ParseHead = %d, %v, %q; httpwire.ReadHead took %d, %q", lineSize, n, gerr, got.Buf, used, want.Buf)
		}
		if got.Status != want.Status || got.ContentLength != want.ContentLength || got.Chunked != want.Chunked ||
			got.Close != want.Close || len(got.Fields) != len(want.Fields) {
			t.Fatalf("lines %d: httpwire.ParseHead's httpwire.Head differs from httpwire.ReadHead's: %+v, want %+v", lineSize, got, want)
		}
		for _, k := range []int{n - 1, n / 2} {
			if m, err := httpwire.ParseHead([]byte(raw[:k]), got, max, lineSize, response); m != 0 || err != nil {
				t.Fatalf("lines %d: httpwire.ParseHead of the first %d of %d bytes = %d, %v; want 0, nil", lineSize, k, n, m, err)
			}
		}
	case errors.Is(werr, httpwire.ErrHeadTooLarge):
		if !errors.Is(gerr, httpwire.ErrHeadTooLarge) {
			t.Fatalf("lines %d: httpwire.ParseHead = %d, %v; httpwire.ReadHead: %v", lineSize, n, gerr, werr)
		}
	case errors.Is(werr, io.EOF) || errors.Is(werr, io.ErrUnexpectedEOF):
		if n != 0 || (gerr != nil && !(errors.Is(gerr, httpwire.ErrHeadTooLarge) && len(raw) > max)) {
			t.Fatalf("lines %d: httpwire.ParseHead of an incomplete httpwire.Head = %d, %v; want 0, nil", lineSize, n, gerr)
		}
	default:
		if !errors.Is(gerr, werr) {
			t.Fatalf("lines %d: httpwire.ParseHead = %d, %v; httpwire.ReadHead: %v", lineSize, n, gerr, werr)
		}
	}
}

// FuzzParseHead checks that httpwire.ParseHead, which the event loops use on bytes in
// memory, reads every input as httpwire.ReadHead does: the same httpwire.Head from a whole
// one, nothing yet from a part of one, and the same error from a bad one.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
		"\r\nPOST / HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nx-hop: 1\r\n\r\nGET /next HTTP/1.1\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n",
		"\r\n\r\n", "\r", "\r\r\n", "GET / HTTP/1.1\r\nHost: x\r\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, response bool) {
		compareParseHead(t, raw, response, 4<<10) // lines limited only by max (1 KiB)
		compareParseHead(t, raw, response, 256)   // httpwire.ReadHead's lines limited by its reader
	})
}

// BenchmarkReadHead reads a browser-like request head, as the lb and the
// edge do for every request.
func BenchmarkReadHead(b *testing.B) {
	raw := "GET /posts/42?page=2 HTTP/1.1\r\nHost: blog.example\r\nUser-Agent: Mozilla/5.0\r\n" +
		"Accept: text/html\r\nAccept-Language: en\r\nAccept-Encoding: gzip\r\nCookie: s=abc\r\n" +
		"Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nIf-None-Match: \"x\"\r\n\r\n"
	sr := strings.NewReader(raw)
	br := bufio.NewReader(sr)
	h := &httpwire.Head{}
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		if err := httpwire.ReadHead(br, h, 8<<10, false); err != nil {
			b.Fatal(err)
		}
	}
}
