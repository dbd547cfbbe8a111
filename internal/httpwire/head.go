// Package httpwire is the HTTP/1.1 message framing (RFC 9112) shared by the
// load balancer (pkg/lb) and the edge (pkg/cdn): reading a request or
// response head into a reusable buffer, classifying its fields, and reading,
// copying or writing bodies by Content-Length, chunked coding or until
// close. Both servers exist because net/http allocates more per request
// than they spend serving one, so this package allocates nothing once its
// buffers have grown.
//
// It is strict where leniency would let a client smuggle a second request
// past a proxy (RFC 9112 section 11.2): conflicting lengths, obsolete line
// folding, stray CR or NUL bytes and codings other than chunked are
// refused. A head with both Content-Length and Transfer-Encoding is parsed
// whole and then refused with ErrBothFramings, so that the caller chooses
// between RFC 9112 section 6.3's two answers: the balancer refuses it, the
// edge decodes the chunked body and closes the connection.
//
// It does no I/O of its own beyond the bufio.Reader and Flusher it is
// given, and no type in it is safe for concurrent use.
package httpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Errors of message framing. A server answers ErrHeadTooLarge with 431,
// ErrBadVersion with 505, ErrBadCoding with 501 (or 400) and the others
// with 400; a proxy answers any of them from a backend with 502.
var (
	// ErrHeadTooLarge: the head, or one of its lines, is over the limit.
	ErrHeadTooLarge = errors.New("message head too large")
	// ErrMalformed: the head breaks the grammar of RFC 9112.
	ErrMalformed = errors.New("malformed message head")
	// ErrBadLength: a Content-Length that is not a decimal number, or
	// two that differ.
	ErrBadLength = errors.New("invalid Content-Length")
	// ErrBothFramings: Content-Length and Transfer-Encoding both; the head
	// is otherwise whole and valid.
	ErrBothFramings = errors.New("both Content-Length and Transfer-Encoding")
	// ErrBadCoding: a Transfer-Encoding other than a single chunked.
	ErrBadCoding = errors.New("unsupported Transfer-Encoding")
	// ErrBadVersion: neither HTTP/1.1 nor HTTP/1.0.
	ErrBadVersion = errors.New("unsupported HTTP version")
	// ErrBadChunk: a chunked body that breaks its grammar or its limits.
	ErrBadChunk = errors.New("malformed chunked body")
)

// Span is a [Start, End) range of a head's buffer.
type Span struct{ Start, End int32 }

// Of returns the bytes of b that s spans.
func (s Span) Of(b []byte) []byte { return b[s.Start:s.End] }

// Kind names the fields that a proxy or a cache treats specially; every
// other field is FieldOther.
type Kind uint8

const (
	FieldOther Kind = iota
	FieldContentLength
	FieldTransferEncoding
	FieldConnection
	FieldHopByHop // Keep-Alive, Proxy-*, TE, Trailer
	FieldUpgrade  // hop-by-hop too
	FieldHost
	FieldExpect
	FieldXForwardedFor
	FieldXForwardedProto
	FieldXRequestID
	FieldVia
	FieldCookie
	FieldSetCookie
	FieldIdempotencyKey
	FieldAccept
	FieldContentType
	FieldRetryAfter
	FieldConditional // If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range
	FieldRange
	FieldCacheControl
	FieldPragma
	FieldTraceparent // W3C Trace Context
	FieldTracestate
)

// Field is one header field line of a head.
type Field struct {
	Line  Span // the whole line, without its line ending
	Name  Span
	Value Span // without the white space around it
	Kind  Kind
	// Hop marks a field a proxy does not forward: hop-by-hop, named by
	// Connection, or framing that it writes afresh.
	Hop bool
}

// Head is a parsed request or response head. Its buffers are reused from
// one message to the next on the same connection.
type Head struct {
	Buf    []byte // the head as received, line ends included
	Fields []Field
	// The three parts of the first line: method, target, version for a
	// request; version, status code, reason for a response.
	First [3]Span
	// Rest is the first line from the status code on (responses).
	Rest Span

	ContentLength int64 // -1 when absent
	Chunked       bool
	Close         bool // Connection: close
	KeepAlive     bool // Connection: keep-alive
	HTTP10        bool
	Expect100     bool // Expect: 100-continue
	HasHost       bool
	Host          Span
	Status        int    // responses
	Tokens        []Span // the field names listed in Connection
	// Empty is set by ReadHead when the source ended before any byte of
	// the head: a connection closed between messages.
	Empty bool
}

// Reset empties h for the next message, keeping its buffers.
func (h *Head) Reset() {
	h.Buf = h.Buf[:0]
	h.Fields = h.Fields[:0]
	h.Tokens = h.Tokens[:0]
	h.ContentLength = -1
	h.Chunked, h.Close, h.KeepAlive, h.HTTP10, h.Expect100, h.HasHost = false, false, false, false, false, false
	h.Status = 0
	h.Host = Span{}
	h.Empty = false
}

// ReadHead reads one message head (up to and including the empty line) from
// br into h.Buf, skipping empty lines before it, and parses it as a request
// or a response.
func ReadHead(br *bufio.Reader, h *Head, max int, response bool) error {
	h.Reset()
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			h.Empty = len(h.Buf) == 0 && len(line) == 0
			if errors.Is(err, bufio.ErrBufferFull) {
				return ErrHeadTooLarge
			}
			if err == io.EOF && (len(h.Buf) > 0 || len(line) > 0) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if first && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			continue // a stray CRLF between messages
		}
		first = false
		if len(h.Buf)+len(line) > max {
			return ErrHeadTooLarge
		}
		h.Buf = append(h.Buf, line...)
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			break
		}
	}
	return h.parse(response)
}

// ParseHead is ReadHead for bytes already in memory (the event loop's
// buffers): it parses the head at the start of b, after any stray line ends,
// into h and returns the bytes it took. It returns 0 and no error when b
// does not hold the whole Head yet, and ErrHeadTooLarge when the head is
// longer than max, or a line than maxLine (line end included: ReadHead's
// limit is its reader's size), whether or not it is complete.
func ParseHead(b []byte, h *Head, max, maxLine int, response bool) (int, error) {
	pos := 0
	for pos < len(b) {
		if b[pos] == '\n' {
			pos++
		} else if b[pos] == '\r' && pos+1 < len(b) && b[pos+1] == '\n' {
			pos += 2
		} else {
			break
		}
	}
	for i := pos; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			if len(b)-pos > max || len(b)-i >= maxLine {
				return 0, ErrHeadTooLarge
			}
			return 0, nil
		}
		end := i + j + 1
		if end-pos > max || end-i > maxLine {
			return 0, ErrHeadTooLarge
		}
		if i > pos && (j == 0 || (j == 1 && b[i] == '\r')) {
			h.Reset()
			h.Buf = append(h.Buf, b[pos:end]...)
			return end, h.parse(response)
		}
		i = end
	}
}

// parse fills h from h.Buf.
func (h *Head) parse(response bool) error {
	b := h.Buf
	pos := 0
	lineNo := 0
	for pos < len(b) {
		end := pos
		for end < len(b) && b[end] != '\n' {
			end++
		}
		next := end + 1
		if end > pos && b[end-1] == '\r' {
			end--
		}
		for i := pos; i < end; i++ {
			if c := b[i]; c == '\r' || c == 0 {
				return ErrMalformed
			}
		}
		if end == pos { // the empty line
			break
		}
		if lineNo == 0 {
			if err := h.parseFirst(pos, end, response); err != nil {
				return err
			}
		} else if err := h.parseField(pos, end); err != nil {
			return err
		}
		lineNo++
		pos = next
	}
	if lineNo == 0 {
		return ErrMalformed
	}
	if len(h.Tokens) > 0 {
		for i := range h.Fields {
			f := &h.Fields[i]
			for _, t := range h.Tokens {
				if EqualFold(f.Name.Of(b), t.Of(b)) {
					f.Hop = true
				}
			}
		}
	}
	if !response && !h.HTTP10 && !h.HasHost {
		return ErrMalformed
	}
	// Last, so that the head is whole for a caller that takes this error
	// as "decode chunked, then close".
	if h.Chunked && h.ContentLength >= 0 {
		return ErrBothFramings
	}
	return nil
}

func (h *Head) parseFirst(pos, end int, response bool) error {
	b := h.Buf
	sp1 := indexByte(b, pos, end, ' ')
	if sp1 < 0 {
		return ErrMalformed
	}
	sp2 := indexByte(b, sp1+1, end, ' ')
	if response {
		// HTTP/1.1 200 OK (the reason may be empty or hold spaces)
		if sp2 < 0 {
			sp2 = end
		}
		h.First = [3]Span{{int32(pos), int32(sp1)}, {int32(sp1 + 1), int32(sp2)}, {int32(min(sp2+1, end)), int32(end)}}
		h.Rest = Span{int32(sp1 + 1), int32(end)}
		code := h.First[1].Of(b)
		if len(code) != 3 {
			return ErrMalformed
		}
		h.Status = 0
		for _, c := range code {
			if c < '0' || c > '9' {
				return ErrMalformed
			}
			h.Status = h.Status*10 + int(c-'0')
		}
		if h.Status < 100 {
			return ErrMalformed
		}
	} else {
		if sp2 < 0 || sp1 == pos || sp2 == sp1+1 || indexByte(b, sp2+1, end, ' ') >= 0 {
			return ErrMalformed
		}
		h.First = [3]Span{{int32(pos), int32(sp1)}, {int32(sp1 + 1), int32(sp2)}, {int32(sp2 + 1), int32(end)}}
		for _, c := range h.First[0].Of(b) {
			if !IsTokenChar(c) {
				return ErrMalformed
			}
		}
	}
	version := h.First[2]
	if response {
		version = h.First[0]
	}
	switch string(version.Of(b)) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.HTTP10 = true
	default:
		return ErrBadVersion
	}
	return nil
}

func (h *Head) parseField(pos, end int) error {
	b := h.Buf
	if c := b[pos]; c == ' ' || c == '\t' {
		return ErrMalformed // obsolete line folding
	}
	colon := indexByte(b, pos, end, ':')
	if colon <= pos {
		return ErrMalformed
	}
	for i := pos; i < colon; i++ {
		if !IsTokenChar(b[i]) {
			return ErrMalformed
		}
	}
	vs, ve := colon+1, end
	for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
		vs++
	}
	for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
		ve--
	}
	f := Field{Line: Span{int32(pos), int32(end)}, Name: Span{int32(pos), int32(colon)}, Value: Span{int32(vs), int32(ve)}}
	f.Kind = KindOf(b[pos:colon])
	if err := h.note(&f); err != nil {
		return err
	}
	h.Fields = append(h.Fields, f)
	return nil
}

// note records what a field of a kind the framing depends on says, and
// marks the fields a proxy does not forward.
func (h *Head) note(f *Field) error {
	value := f.Value.Of(h.Buf)
	switch f.Kind {
	case FieldContentLength:
		n, ok := ParseLength(value)
		if !ok || (h.ContentLength >= 0 && h.ContentLength != n) {
			return ErrBadLength
		}
		h.ContentLength = n
		f.Hop = true // written afresh
	case FieldTransferEncoding:
		if !EqualFold(value, []byte("chunked")) || h.Chunked {
			return ErrBadCoding
		}
		h.Chunked = true
		f.Hop = true
	case FieldConnection:
		f.Hop = true
		h.connectionTokens(int(f.Value.Start), int(f.Value.End))
	case FieldHopByHop, FieldUpgrade, FieldExpect:
		f.Hop = true
		if f.Kind == FieldExpect && EqualFold(value, []byte("100-continue")) {
			h.Expect100 = true
		}
	case FieldHost:
		if h.HasHost {
			return ErrMalformed
		}
		h.HasHost = true
		h.Host = f.Value
	}
	return nil
}

func (h *Head) connectionTokens(vs, ve int) {
	b := h.Buf
	for i := vs; i < ve; {
		j := i
		for j < ve && b[j] != ',' {
			j++
		}
		s, e := i, j
		for s < e && (b[s] == ' ' || b[s] == '\t') {
			s++
		}
		for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
			e--
		}
		tok := b[s:e]
		switch {
		case EqualFold(tok, []byte("close")):
			h.Close = true
		case EqualFold(tok, []byte("keep-alive")):
			h.KeepAlive = true
		case len(tok) > 0:
			h.Tokens = append(h.Tokens, Span{int32(s), int32(e)})
		}
		i = j + 1
	}
}

// Value returns the value of the first field of kind k.
func (h *Head) Value(k Kind) ([]byte, bool) {
	for i := range h.Fields {
		if h.Fields[i].Kind == k {
			return h.Fields[i].Value.Of(h.Buf), true
		}
	}
	return nil, false
}

// KindOf classifies a field name, case-insensitively.
func KindOf(name []byte) Kind {
	if len(name) < len(kindsByLength) {
		for _, k := range kindsByLength[len(name)] {
			if EqualFold(name, k.name) {
				return k.kind
			}
		}
	}
	if len(name) >= 6 && EqualFold(name[:6], []byte("proxy-")) {
		return FieldHopByHop
	}
	return FieldOther
}

type namedKind struct {
	name []byte // lower case
	kind Kind
}

// kindsByLength lists the names of the field kinds by their length, so that
// KindOf compares a name with two or three others at most. Read-only.
var kindsByLength = [...][]namedKind{
	2:  {{[]byte("te"), FieldHopByHop}},
	3:  {{[]byte("via"), FieldVia}},
	4:  {{[]byte("host"), FieldHost}},
	5:  {{[]byte("range"), FieldRange}},
	6:  {{[]byte("cookie"), FieldCookie}, {[]byte("expect"), FieldExpect}, {[]byte("accept"), FieldAccept}, {[]byte("pragma"), FieldPragma}},
	7:  {{[]byte("trailer"), FieldHopByHop}, {[]byte("upgrade"), FieldUpgrade}},
	8:  {{[]byte("if-match"), FieldConditional}, {[]byte("if-range"), FieldConditional}},
	10: {{[]byte("connection"), FieldConnection}, {[]byte("keep-alive"), FieldHopByHop}, {[]byte("set-cookie"), FieldSetCookie}, {[]byte("tracestate"), FieldTracestate}},
	11: {{[]byte("retry-after"), FieldRetryAfter}, {[]byte("traceparent"), FieldTraceparent}},
	12: {{[]byte("x-request-id"), FieldXRequestID}, {[]byte("content-type"), FieldContentType}},
	13: {{[]byte("if-none-match"), FieldConditional}, {[]byte("cache-control"), FieldCacheControl}},
	14: {{[]byte("content-length"), FieldContentLength}},
	15: {{[]byte("x-forwarded-for"), FieldXForwardedFor}, {[]byte("idempotency-key"), FieldIdempotencyKey}},
	17: {{[]byte("transfer-encoding"), FieldTransferEncoding}, {[]byte("x-forwarded-proto"), FieldXForwardedProto}, {[]byte("if-modified-since"), FieldConditional}},
	19: {{[]byte("if-unmodified-since"), FieldConditional}},
}

// ParseLength parses a Content-Length: digits only, no sign, no overflow.
func ParseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func EqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func indexByte(b []byte, from, to int, c byte) int {
	for i := from; i < to; i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// IsTokenChar reports whether c may appear in a method or field name
// (RFC 9110 tchar).
func IsTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
