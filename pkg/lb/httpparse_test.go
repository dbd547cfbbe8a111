package lb

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func parseRequest(t testing.TB, raw string) (*head, error) {
	t.Helper()
	h := &head{}
	err := readHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, false)
	return h, err
}

func TestReadRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr error
		check   func(t *testing.T, h *head)
	}{
		{name: "simple", raw: "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", check: func(t *testing.T, h *head) {
			if got := string(h.first[0].of(h.buf)) + " " + string(h.first[1].of(h.buf)); got != "GET /a?b=1" {
				t.Errorf("request line = %q", got)
			}
			if h.contentLength != -1 || h.chunked || h.http10 {
				t.Errorf("framing = %d %v %v, want none", h.contentLength, h.chunked, h.http10)
			}
		}},
		{name: "leading CRLF and bare LF", raw: "\r\nPOST / HTTP/1.1\nHost: x\nContent-Length: 5\n\n", check: func(t *testing.T, h *head) {
			if h.contentLength != 5 {
				t.Errorf("Content-Length = %d, want 5", h.contentLength)
			}
		}},
		{name: "connection tokens", raw: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nx-hop: 1\r\nX-Keep: 2\r\n\r\n", check: func(t *testing.T, h *head) {
			if !h.connClose {
				t.Errorf("connClose = false")
			}
			hops := ""
			for _, f := range h.fields {
				if f.hop {
					hops += string(f.name.of(h.buf)) + ","
				}
			}
			if hops != "Connection,x-hop," {
				t.Errorf("hop fields = %q, want Connection,x-hop,", hops)
			}
		}},
		{name: "http 1.0 without host", raw: "GET / HTTP/1.0\r\n\r\n", check: func(t *testing.T, h *head) {
			if !h.http10 {
				t.Errorf("http10 = false")
			}
		}},
		{name: "chunked", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n", check: func(t *testing.T, h *head) {
			if !h.chunked {
				t.Errorf("chunked = false")
			}
		}},
		{name: "same length twice", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"},
		{name: "smuggling CL and TE", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", wantErr: errSmuggling},
		{name: "conflicting lengths", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", wantErr: errBadLength},
		{name: "signed length", raw: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", wantErr: errBadLength},
		{name: "gzip coding", raw: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", wantErr: errBadCoding},
		{name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", wantErr: errMalformed},
		{name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", wantErr: errMalformed},
		{name: "stray CR", raw: "GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", wantErr: errMalformed},
		{name: "no host", raw: "GET / HTTP/1.1\r\n\r\n", wantErr: errMalformed},
		{name: "two hosts", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", wantErr: errMalformed},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\n", wantErr: errBadVersion},
		{name: "extra space", raw: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", wantErr: errMalformed},
		{name: "too large", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", wantErr: errHeadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseRequest(t, tt.raw)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("readHead = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("readHead = %v", err)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
		})
	}
}

func TestReadResponseHead(t *testing.T) {
	h := &head{}
	raw := "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabc"
	if err := readHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, true); err != nil {
		t.Fatal(err)
	}
	if h.status != 404 || string(h.rest.of(h.buf)) != "404 Not Found" || h.contentLength != 3 {
		t.Errorf("status %d rest %q length %d, want 404, %q, 3", h.status, h.rest.of(h.buf), h.contentLength, "404 Not Found")
	}
	raw = "HTTP/1.1 503 Service Unavailable\r\nretry-AFTER: 2\r\nContent-Length: 0\r\n\r\n"
	if err := readHead(bufio.NewReader(strings.NewReader(raw)), h, 8<<10, true); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.field(fRetryAfter); !ok || string(v) != "2" {
		t.Errorf("field(fRetryAfter) = %q, %v; want \"2\", true", v, ok)
	}
	if err := readHead(bufio.NewReader(strings.NewReader("HTTP/1.1 20 OK\r\n\r\n")), h, 8<<10, true); !errors.Is(err, errMalformed) {
		t.Errorf("two-digit status: err = %v, want errMalformed", err)
	}
}

type bufFlusher struct{ bytes.Buffer }

func (*bufFlusher) Flush() error { return nil }

func TestCopyChunked(t *testing.T) {
	body := "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
	var out bufFlusher
	src := bufio.NewReader(strings.NewReader(body))
	n, err := copyChunked(&out, src, true)
	if err != nil || n != 11 {
		t.Fatalf("copyChunked = %d, %v; want 11, nil", n, err)
	}
	if got, want := out.String(), strings.TrimSuffix(body, "NEXT"); got != want {
		t.Errorf("kept chunked = %q, want %q", got, want)
	}
	if rest, _ := src.ReadString(0); rest != "NEXT" {
		t.Errorf("left after body = %q, want NEXT", rest)
	}
	out.Reset()
	if _, err := copyChunked(&out, bufio.NewReader(strings.NewReader(body)), false); err != nil || out.String() != "hello world" {
		t.Errorf("decoded = %q, %v; want %q", out.String(), err, "hello world")
	}
	for _, bad := range []string{"zz\r\n", "5\r\nhello", "5\r\nhelloXX\r\n0\r\n\r\n", "fffffffffffffffff\r\n"} {
		if _, err := copyChunked(&out, bufio.NewReader(strings.NewReader(bad)), true); err == nil {
			t.Errorf("copyChunked(%q) = nil error, want one", bad)
		}
	}
}

// FuzzReadHead checks that any input either fails cleanly or yields a head
// whose parts lie within its buffer and whose framing is unambiguous.
func FuzzReadHead(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
	f.Add("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n", false)
	f.Add("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true)
	f.Add("HTTP/1.0 204\r\n\r\n", true)
	f.Fuzz(func(t *testing.T, raw string, response bool) {
		h := &head{}
		err := readHead(bufio.NewReader(strings.NewReader(raw)), h, 4<<10, response)
		if err != nil {
			return
		}
		n := int32(len(h.buf))
		in := func(s span) bool { return 0 <= s.start && s.start <= s.end && s.end <= n }
		for _, s := range append(h.first[:], h.host) {
			if !in(s) {
				t.Fatalf("span %v outside buffer of %d", s, n)
			}
		}
		for _, fl := range h.fields {
			if !in(fl.line) || !in(fl.name) || !in(fl.value) {
				t.Fatalf("field spans %+v outside buffer of %d", fl, n)
			}
			if bytes.ContainsAny(fl.line.of(h.buf), "\r\n\x00") {
				t.Fatalf("field line %q holds CR, LF or NUL", fl.line.of(h.buf))
			}
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatalf("both chunked and Content-Length %d accepted", h.contentLength)
		}
	})
}

// compareParseHead compares parseHead with readHead from a reader of
// lineSize bytes, heads limited to 1 KiB.
func compareParseHead(t *testing.T, raw string, response bool, lineSize int) {
	const max = 1 << 10
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, lineSize)
	want := &head{}
	werr := readHead(br, want, max, response)
	used := len(raw) - sr.Len() - br.Buffered()
	got := &head{}
	n, gerr := parseHead([]byte(raw), got, max, lineSize, response)
	switch {
	case werr == nil:
		if gerr != nil || n != used || string(got.buf) != string(want.buf) {
			t.Fatalf("lines %d: parseHead = %d, %v, %q; readHead took %d, %q", lineSize, n, gerr, got.buf, used, want.buf)
		}
		if got.status != want.status || got.contentLength != want.contentLength || got.chunked != want.chunked ||
			got.connClose != want.connClose || len(got.fields) != len(want.fields) {
			t.Fatalf("lines %d: parseHead's head differs from readHead's: %+v, want %+v", lineSize, got, want)
		}
		for _, k := range []int{n - 1, n / 2} {
			if m, err := parseHead([]byte(raw[:k]), got, max, lineSize, response); m != 0 || err != nil {
				t.Fatalf("lines %d: parseHead of the first %d of %d bytes = %d, %v; want 0, nil", lineSize, k, n, m, err)
			}
		}
	case errors.Is(werr, errHeadTooLarge):
		if !errors.Is(gerr, errHeadTooLarge) {
			t.Fatalf("lines %d: parseHead = %d, %v; readHead: %v", lineSize, n, gerr, werr)
		}
	case isEOF(werr):
		if n != 0 || (gerr != nil && !(errors.Is(gerr, errHeadTooLarge) && len(raw) > max)) {
			t.Fatalf("lines %d: parseHead of an incomplete head = %d, %v; want 0, nil", lineSize, n, gerr)
		}
	default:
		if !errors.Is(gerr, werr) {
			t.Fatalf("lines %d: parseHead = %d, %v; readHead: %v", lineSize, n, gerr, werr)
		}
	}
}

// FuzzParseHead checks that parseHead, which the event loops use on bytes in
// memory, reads every input as readHead does: the same head from a whole
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
		compareParseHead(t, raw, response, 256)   // readHead's lines limited by its reader
	})
}
