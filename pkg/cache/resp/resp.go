// Package resp reads requests and writes replies in RESP2, the Redis
// serialization protocol, for the cache role's server (pkg/cache).
//
// Parsing works on a caller's buffer and allocates nothing: a parsed
// request's arguments are slices of that buffer, valid until the caller
// reuses it. The parser never trusts a declared length to size anything; the
// caller grows its buffer only as bytes arrive, up to Limits.MaxRequest, so a
// client claiming a huge array or bulk string costs nothing until it sends
// the bytes, and is refused as soon as its claim passes a limit.
//
// Both request forms Redis accepts are read: multibulk arrays of bulk
// strings (what every client library and redis-cli send) and inline
// commands (a line of space-separated words, as typed over telnet).
package resp

import (
	"bytes"
	"strconv"
)

// Limits bound what one request may hold.
type Limits struct {
	// MaxArgs is the largest number of arguments in one request,
	// command name included (Redis: 1048576).
	MaxArgs int
	// MaxBulk is the largest single argument, in bytes (Redis's
	// proto-max-bulk-len, 512 MiB there).
	MaxBulk int
	// MaxRequest is the largest whole request in bytes, framing included.
	// It bounds the buffer a connection needs.
	MaxRequest int
	// MaxInline is the longest inline command line in bytes (Redis: 64 KiB).
	MaxInline int
}

// DefaultLimits are generous limits for a cache of small values.
func DefaultLimits() Limits {
	return Limits{MaxArgs: 1 << 16, MaxBulk: 1 << 20, MaxRequest: 16 << 20, MaxInline: 64 << 10}
}

// ProtocolError is a malformed request. The connection cannot be read any
// further, since where the next request starts is unknown: the server
// answers "-ERR Protocol error: <text>" and closes it, as Redis does.
type ProtocolError string

func (e ProtocolError) Error() string { return "Protocol error: " + string(e) }

// maxHeader is the longest "*<n>" or "$<n>" line, CRLF included, that can
// hold a valid length; a longer line without CRLF is garbage.
const maxHeader = 1 + 20 + 2

// ParseRequest parses the first request in buf. It appends the request's
// arguments to args[:0] and returns them with the number of bytes the
// request took.
//
// When buf holds only part of a request it returns n == 0 and a nil error;
// need is then the total size of the request in bytes when the parser
// already knows it (the caller can wait for that many before trying again),
// or 0 when it does not. A request that cannot be valid returns a
// ProtocolError.
//
// A request with no arguments (an empty line, "*0") is valid: it returns
// n > 0 and no arguments, and the caller skips it.
func ParseRequest(buf []byte, args [][]byte, lim Limits) (out [][]byte, n, need int, err error) {
	args = args[:0]
	if len(buf) == 0 {
		return args, 0, 0, nil
	}
	if buf[0] != '*' {
		return parseInline(buf, args, lim)
	}
	line, pos, ok := readLine(buf, 1)
	if !ok {
		if len(buf) > maxHeader {
			return args, 0, 0, ProtocolError("invalid multibulk length")
		}
		return args, 0, 0, nil
	}
	count, ok := parseLen(line)
	if !ok || count > lim.MaxArgs {
		return args, 0, 0, ProtocolError("invalid multibulk length")
	}
	if count <= 0 { // Redis ignores "*0" and "*-1" requests
		return args, pos, 0, nil
	}
	for range count {
		if pos >= len(buf) {
			return args[:0], 0, 0, nil
		}
		if buf[pos] != '$' {
			return args[:0], 0, 0, ProtocolError("expected '$', got '" + printable(buf[pos]) + "'")
		}
		line, next, ok := readLine(buf, pos+1)
		if !ok {
			if len(buf)-pos > maxHeader {
				return args[:0], 0, 0, ProtocolError("invalid bulk length")
			}
			return args[:0], 0, 0, nil
		}
		size, ok := parseLen(line)
		if !ok || size < 0 || size > lim.MaxBulk {
			return args[:0], 0, 0, ProtocolError("invalid bulk length")
		}
		end := next + size
		if end+2 > lim.MaxRequest {
			return args[:0], 0, 0, ProtocolError("request larger than " + strconv.Itoa(lim.MaxRequest) + " bytes")
		}
		if end+2 > len(buf) {
			return args[:0], 0, end + 2, nil
		}
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return args[:0], 0, 0, ProtocolError("bulk string not followed by CRLF")
		}
		args = append(args, buf[next:end:end])
		pos = end + 2
	}
	return args, pos, 0, nil
}

// parseInline reads a command line of words separated by spaces or tabs.
// Quoting is not supported; clients that need binary-safe arguments use
// multibulk requests.
func parseInline(buf []byte, args [][]byte, lim Limits) ([][]byte, int, int, error) {
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		if len(buf) > lim.MaxInline {
			return args, 0, 0, ProtocolError("too big inline request")
		}
		return args, 0, 0, nil
	}
	if nl > lim.MaxInline {
		return args, 0, 0, ProtocolError("too big inline request")
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	for i := 0; i < len(line); {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		if i > start {
			if len(args) == lim.MaxArgs {
				return args[:0], 0, 0, ProtocolError("invalid multibulk length")
			}
			args = append(args, line[start:i:i])
		}
	}
	return args, nl + 1, 0, nil
}

// readLine returns buf[from:i] where buf[i:i+2] is the first CRLF at or
// after from, and i+2.
func readLine(buf []byte, from int) ([]byte, int, bool) {
	end := from + maxHeader
	if end > len(buf) {
		end = len(buf)
	}
	i := bytes.IndexByte(buf[from:end], '\r')
	if i < 0 || from+i+1 >= len(buf) {
		return nil, 0, false
	}
	i += from
	if buf[i+1] != '\n' {
		return nil, 0, false
	}
	return buf[from:i], i + 2, true
}

// parseLen parses a decimal length, possibly negative, of at most 18
// digits, so it cannot overflow.
func parseLen(b []byte) (int, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return "\\x" + strconv.FormatUint(uint64(c), 16)
}

// AppendRequest appends args as a multibulk request, as a client sends it.
func AppendRequest(b []byte, args ...[]byte) []byte {
	b = AppendArray(b, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// AppendSimple appends a simple string reply: +s.
func AppendSimple(b []byte, s string) []byte {
	b = append(b, '+')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendOK appends +OK, the commonest reply.
func AppendOK(b []byte) []byte { return append(b, "+OK\r\n"...) }

// AppendError appends an error reply. msg starts with an error code
// ("ERR ...", "WRONGTYPE ...") by Redis's convention; CR and LF in it are
// replaced by spaces, since they would end the reply early.
func AppendError(b []byte, msg string) []byte {
	b = append(b, '-')
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\r', '\n')
}

// AppendInt appends an integer reply: :n.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, ':')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends a bulk string reply.
func AppendBulk(b, s []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendBulkString appends a bulk string reply from a string.
func AppendBulkString(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendNull appends the null bulk string, RESP2's "no value": $-1.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendArray appends the header of an array of n elements; the caller
// appends the elements.
func AppendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}
