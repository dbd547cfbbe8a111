package lb

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// This file is the balancer's HTTP/1.1 message framing: reading a request or
// response head into a reusable buffer, classifying its fields, and copying
// bodies by Content-Length, chunked coding or until close. It allocates
// nothing once its buffers have grown, and it is strict where leniency
// would let a client smuggle a second request past the balancer (RFC 9112
// section 11.2): both Content-Length and Transfer-Encoding, conflicting
// lengths, obsolete line folding and stray CR or NUL bytes are refused.

// Errors of message framing; errHeadTooLarge answers 431, the others 400
// (from a client) or 502 (from a backend).
var (
	errHeadTooLarge = errors.New("message head too large")
	errMalformed    = errors.New("malformed message head")
	errBadLength    = errors.New("invalid Content-Length")
	errSmuggling    = errors.New("both Content-Length and Transfer-Encoding")
	errBadCoding    = errors.New("unsupported Transfer-Encoding")
	errBadVersion   = errors.New("unsupported HTTP version")
	errBadChunk     = errors.New("malformed chunked body")
)

// span is a [start, end) range of a head's buffer.
type span struct{ start, end int32 }

func (s span) of(b []byte) []byte { return b[s.start:s.end] }

// fieldKind names the fields the balancer treats specially.
type fieldKind uint8

const (
	fOther fieldKind = iota
	fContentLength
	fTransferEncoding
	fConnection
	fHopByHop // Keep-Alive, Proxy-*, TE, Trailer, Upgrade
	fHost
	fExpect
	fXForwardedFor
	fXForwardedProto
	fXRequestID
	fVia
	fCookie
	fSetCookie
	fIdempotencyKey
	fAccept
	fContentType
	fRetryAfter
)

type field struct {
	line  span // the whole line, without its line ending
	name  span
	value span
	kind  fieldKind
	hop   bool // not forwarded: hop-by-hop, or named by Connection
}

// head is a parsed request or response head. Its buffers are reused from
// one message to the next on the same connection.
type head struct {
	buf    []byte
	fields []field
	// The three parts of the first line: method, target, version for a
	// request; version, status code, reason for a response.
	first [3]span
	// rest is the first line from the status code on (responses).
	rest span

	contentLength int64 // -1 when absent
	chunked       bool
	connClose     bool
	connKeepAlive bool
	http10        bool
	expect100     bool
	hasHost       bool
	host          span
	status        int
	tokens        []span // field names listed in Connection
	// empty is set by readHead when the source ended before any byte of
	// the head: a connection closed between messages.
	empty bool
}

func (h *head) reset() {
	h.buf = h.buf[:0]
	h.fields = h.fields[:0]
	h.tokens = h.tokens[:0]
	h.contentLength = -1
	h.chunked, h.connClose, h.connKeepAlive, h.http10, h.expect100, h.hasHost = false, false, false, false, false, false
	h.status = 0
	h.empty = false
}

// readHead reads one message head (up to and including the empty line) from
// br into h.buf, skipping empty lines before it, and parses it as a request
// or a response.
func readHead(br *bufio.Reader, h *head, max int, response bool) error {
	h.reset()
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			h.empty = len(h.buf) == 0 && len(line) == 0
			if errors.Is(err, bufio.ErrBufferFull) {
				return errHeadTooLarge
			}
			if err == io.EOF && (len(h.buf) > 0 || len(line) > 0) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if first && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			continue // a stray CRLF between messages
		}
		first = false
		if len(h.buf)+len(line) > max {
			return errHeadTooLarge
		}
		h.buf = append(h.buf, line...)
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			break
		}
	}
	return h.parse(response)
}

// parseHead is readHead for bytes already in memory (the event loop's
// buffers): it parses the head at the start of b, after any stray line ends,
// into h and returns the bytes it took. It returns 0 and no error when b
// does not hold the whole head yet, and errHeadTooLarge when the head is
// longer than max, or a line than maxLine (line end included: readHead's
// limit is its reader's size), whether or not it is complete.
func parseHead(b []byte, h *head, max, maxLine int, response bool) (int, error) {
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
				return 0, errHeadTooLarge
			}
			return 0, nil
		}
		end := i + j + 1
		if end-pos > max || end-i > maxLine {
			return 0, errHeadTooLarge
		}
		if i > pos && (j == 0 || (j == 1 && b[i] == '\r')) {
			h.reset()
			h.buf = append(h.buf, b[pos:end]...)
			return end, h.parse(response)
		}
		i = end
	}
}

// parse fills h from h.buf.
func (h *head) parse(response bool) error {
	b := h.buf
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
				return errMalformed
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
		return errMalformed
	}
	if h.chunked && h.contentLength >= 0 {
		return errSmuggling
	}
	if len(h.tokens) > 0 {
		for i := range h.fields {
			f := &h.fields[i]
			for _, t := range h.tokens {
				if asciiEqualFold(f.name.of(b), t.of(b)) {
					f.hop = true
				}
			}
		}
	}
	if !response && !h.http10 && !h.hasHost {
		return errMalformed
	}
	return nil
}

func (h *head) parseFirst(pos, end int, response bool) error {
	b := h.buf
	sp1 := indexByte(b, pos, end, ' ')
	if sp1 < 0 {
		return errMalformed
	}
	sp2 := indexByte(b, sp1+1, end, ' ')
	if response {
		// HTTP/1.1 200 OK (the reason may be empty or hold spaces)
		if sp2 < 0 {
			sp2 = end
		}
		h.first = [3]span{{int32(pos), int32(sp1)}, {int32(sp1 + 1), int32(sp2)}, {int32(min(sp2+1, end)), int32(end)}}
		h.rest = span{int32(sp1 + 1), int32(end)}
		code := h.first[1].of(b)
		if len(code) != 3 {
			return errMalformed
		}
		h.status = 0
		for _, c := range code {
			if c < '0' || c > '9' {
				return errMalformed
			}
			h.status = h.status*10 + int(c-'0')
		}
		if h.status < 100 {
			return errMalformed
		}
	} else {
		if sp2 < 0 || sp1 == pos || sp2 == sp1+1 || indexByte(b, sp2+1, end, ' ') >= 0 {
			return errMalformed
		}
		h.first = [3]span{{int32(pos), int32(sp1)}, {int32(sp1 + 1), int32(sp2)}, {int32(sp2 + 1), int32(end)}}
		for _, c := range h.first[0].of(b) {
			if !isTokenChar(c) {
				return errMalformed
			}
		}
	}
	version := h.first[2]
	if response {
		version = h.first[0]
	}
	switch string(version.of(b)) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return errBadVersion
	}
	return nil
}

func (h *head) parseField(pos, end int) error {
	b := h.buf
	if c := b[pos]; c == ' ' || c == '\t' {
		return errMalformed // obsolete line folding
	}
	colon := indexByte(b, pos, end, ':')
	if colon <= pos {
		return errMalformed
	}
	for i := pos; i < colon; i++ {
		if !isTokenChar(b[i]) {
			return errMalformed
		}
	}
	vs, ve := colon+1, end
	for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
		vs++
	}
	for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
		ve--
	}
	f := field{line: span{int32(pos), int32(end)}, name: span{int32(pos), int32(colon)}, value: span{int32(vs), int32(ve)}}
	f.kind = kindOf(b[pos:colon])
	value := b[vs:ve]
	switch f.kind {
	case fContentLength:
		n, ok := parseLength(value)
		if !ok || (h.contentLength >= 0 && h.contentLength != n) {
			return errBadLength
		}
		h.contentLength = n
		f.hop = true // written afresh
	case fTransferEncoding:
		if !asciiEqualFold(value, []byte("chunked")) || h.chunked {
			return errBadCoding
		}
		h.chunked = true
		f.hop = true
	case fConnection:
		f.hop = true
		h.connectionTokens(vs, ve)
	case fHopByHop, fExpect:
		f.hop = true
		if f.kind == fExpect && asciiEqualFold(value, []byte("100-continue")) {
			h.expect100 = true
		}
	case fHost:
		if h.hasHost {
			return errMalformed
		}
		h.hasHost = true
		h.host = f.value
	}
	h.fields = append(h.fields, f)
	return nil
}

func (h *head) connectionTokens(vs, ve int) {
	b := h.buf
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
		case asciiEqualFold(tok, []byte("close")):
			h.connClose = true
		case asciiEqualFold(tok, []byte("keep-alive")):
			h.connKeepAlive = true
		case len(tok) > 0:
			h.tokens = append(h.tokens, span{int32(s), int32(e)})
		}
		i = j + 1
	}
}

// field returns the value of the first field of kind k.
func (h *head) field(k fieldKind) ([]byte, bool) {
	for i := range h.fields {
		if h.fields[i].kind == k {
			return h.fields[i].value.of(h.buf), true
		}
	}
	return nil, false
}

// kindOf classifies a field name, case-insensitively.
func kindOf(name []byte) fieldKind {
	switch len(name) {
	case 2:
		if asciiEqualFold(name, []byte("te")) {
			return fHopByHop
		}
	case 3:
		if asciiEqualFold(name, []byte("via")) {
			return fVia
		}
	case 4:
		if asciiEqualFold(name, []byte("host")) {
			return fHost
		}
	case 6:
		switch {
		case asciiEqualFold(name, []byte("cookie")):
			return fCookie
		case asciiEqualFold(name, []byte("expect")):
			return fExpect
		case asciiEqualFold(name, []byte("accept")):
			return fAccept
		}
	case 7:
		if asciiEqualFold(name, []byte("trailer")) || asciiEqualFold(name, []byte("upgrade")) {
			return fHopByHop
		}
	case 10:
		switch {
		case asciiEqualFold(name, []byte("connection")):
			return fConnection
		case asciiEqualFold(name, []byte("keep-alive")):
			return fHopByHop
		case asciiEqualFold(name, []byte("set-cookie")):
			return fSetCookie
		}
	case 11:
		if asciiEqualFold(name, []byte("retry-after")) {
			return fRetryAfter
		}
	case 12:
		switch {
		case asciiEqualFold(name, []byte("x-request-id")):
			return fXRequestID
		case asciiEqualFold(name, []byte("content-type")):
			return fContentType
		}
	case 14:
		if asciiEqualFold(name, []byte("content-length")) {
			return fContentLength
		}
	case 15:
		if asciiEqualFold(name, []byte("x-forwarded-for")) {
			return fXForwardedFor
		}
		if asciiEqualFold(name, []byte("idempotency-key")) {
			return fIdempotencyKey
		}
	case 17:
		switch {
		case asciiEqualFold(name, []byte("transfer-encoding")):
			return fTransferEncoding
		case asciiEqualFold(name, []byte("x-forwarded-proto")):
			return fXForwardedProto
		}
	}
	if len(name) >= 6 && asciiEqualFold(name[:6], []byte("proxy-")) {
		return fHopByHop
	}
	return fOther
}

// parseLength parses a Content-Length: digits only, no sign, no overflow.
func parseLength(b []byte) (int64, bool) {
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

func asciiEqualFold(a, b []byte) bool {
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

// isTokenChar reports whether c may appear in a method or field name
// (RFC 9110 tchar).
func isTokenChar(c byte) bool {
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

// bodyless reports whether a response to method with status has no body
// whatever its fields say (RFC 9112 6.3).
func bodyless(isHead bool, status int) bool {
	return isHead || status < 200 || status == 204 || status == 304
}

// flusher is the side a copy writes to; it is flushed before each read that
// would block, so that a streamed body reaches the reader as it is produced
// while a body that is already buffered goes out in one write.
type flusher interface {
	io.Writer
	Flush() error
}

// readErr marks a failure of the source of a copy, to tell it from a failure
// of the destination.
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

func fill(dst flusher, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if err := dst.Flush(); err != nil {
		return err
	}
	if _, err := src.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return readErr{err}
	}
	return nil
}

// copyFixed copies exactly n bytes.
func copyFixed(dst flusher, src *bufio.Reader, n int64) error {
	for n > 0 {
		if err := fill(dst, src); err != nil {
			return err
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		_, _ = src.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyUntilEOF copies until the source ends (a body delimited by close).
func copyUntilEOF(dst flusher, src *bufio.Reader) error {
	for {
		if err := fill(dst, src); err != nil {
			var re readErr
			if errors.As(err, &re) && errors.Is(re.error, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		k := src.Buffered()
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		_, _ = src.Discard(k)
	}
}

// copyChunked copies a chunked body, chunk by chunk. It re-frames nothing
// when keep is true (the trailer section passes too); when keep is false it
// decodes, writing the data alone. It returns the data length.
func copyChunked(dst flusher, src *bufio.Reader, keep bool) (int64, error) {
	var total int64
	for {
		if err := fill(dst, src); err != nil {
			return total, err
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, readErr{errBadChunk}
		}
		size, ok := chunkSize(line)
		if !ok {
			return total, readErr{errBadChunk}
		}
		if keep {
			if _, err := dst.Write(line); err != nil {
				return total, err
			}
		}
		if size == 0 {
			// The trailer section, up to an empty line.
			for {
				if err := fill(dst, src); err != nil {
					return total, err
				}
				tl, err := src.ReadSlice('\n')
				if err != nil {
					return total, readErr{errBadChunk}
				}
				if keep {
					if _, err := dst.Write(tl); err != nil {
						return total, err
					}
				}
				if len(tl) == 1 || (len(tl) == 2 && tl[0] == '\r') {
					return total, nil
				}
			}
		}
		if err := copyFixed(dst, src, size); err != nil {
			return total, err
		}
		total += size
		if err := fill(dst, src); err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || !(len(crlf) == 1 || (len(crlf) == 2 && crlf[0] == '\r')) {
			return total, readErr{errBadChunk}
		}
		if keep {
			if _, err := dst.Write(crlf); err != nil {
				return total, err
			}
		}
	}
}

// chunkSize parses a chunk-size line ("1a3;ext=1\r\n").
func chunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			if digits == 0 || (c != ';' && c != '\r' && c != '\n' && c != ' ' && c != '\t') {
				return 0, false
			}
			return n, true
		}
		if digits == 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
		digits++
	}
	return 0, false
}
