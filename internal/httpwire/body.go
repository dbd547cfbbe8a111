package httpwire

import (
	"bufio"
	"errors"
	"io"
	"strconv"
)

// Bodyless reports whether a response to method with status has no body
// whatever its fields say (RFC 9112 6.3).
func Bodyless(isHead bool, status int) bool {
	return isHead || status < 200 || status == 204 || status == 304
}

// Flusher is the side a copy writes to; it is flushed before each read that
// would block, so that a streamed body reaches the reader as it is produced
// while a body that is already buffered goes out in one write.
type Flusher interface {
	io.Writer
	Flush() error
}

// MaxTrailerBytes bounds a chunked body's trailer section, which no
// reader here keeps: past it the body is ErrBadChunk, so that a peer cannot
// hold a connection with an endless trailer.
const MaxTrailerBytes = 64 << 10

// ReadError marks a failure of the source of a copy, to tell it from a
// failure of the destination (a proxy answers the first 400 or 502 and
// only drops the connection on the second).
type ReadError struct{ Err error }

func (e ReadError) Error() string { return e.Err.Error() }
func (e ReadError) Unwrap() error { return e.Err }

func fill(dst Flusher, src *bufio.Reader) error {
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
		return ReadError{err}
	}
	return nil
}

// CopyFixed copies exactly n bytes.
func CopyFixed(dst Flusher, src *bufio.Reader, n int64) error {
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

// CopyUntilEOF copies until the source ends (a body delimited by close).
func CopyUntilEOF(dst Flusher, src *bufio.Reader) error {
	for {
		if err := fill(dst, src); err != nil {
			var re ReadError
			if errors.As(err, &re) && errors.Is(re.Err, io.ErrUnexpectedEOF) {
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

// CopyChunked copies a chunked body, chunk by chunk. It re-frames nothing
// when keep is true (the trailer section passes too); when keep is false it
// decodes, writing the data alone. It returns the data length.
func CopyChunked(dst Flusher, src *bufio.Reader, keep bool) (int64, error) {
	var total int64
	for {
		if err := fill(dst, src); err != nil {
			return total, err
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, ReadError{ErrBadChunk}
		}
		size, ok := ChunkSize(line)
		if !ok {
			return total, ReadError{ErrBadChunk}
		}
		if keep {
			if _, err := dst.Write(line); err != nil {
				return total, err
			}
		}
		if size == 0 {
			return total, copyTrailer(dst, src, keep)
		}
		if err := CopyFixed(dst, src, size); err != nil {
			return total, err
		}
		total += size
		if err := fill(dst, src); err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || !isLineEnd(crlf) {
			return total, ReadError{ErrBadChunk}
		}
		if keep {
			if _, err := dst.Write(crlf); err != nil {
				return total, err
			}
		}
	}
}

// copyTrailer copies (keep) or skips a chunked body's trailer section, up
// to and including its empty line.
func copyTrailer(dst Flusher, src *bufio.Reader, keep bool) error {
	n := 0
	for {
		if err := fill(dst, src); err != nil {
			return err
		}
		line, err := src.ReadSlice('\n')
		n += len(line)
		if err != nil || n > MaxTrailerBytes {
			return ReadError{ErrBadChunk}
		}
		if keep {
			if _, err := dst.Write(line); err != nil {
				return err
			}
		}
		if isLineEnd(line) {
			return nil
		}
	}
}

// isLineEnd reports whether line is an empty line: CRLF or a bare LF.
func isLineEnd(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}

// ChunkSize parses a chunk-size line ("1a3;ext=1\r\n").
func ChunkSize(line []byte) (int64, bool) {
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

// ChunkedReader decodes a chunked body from a bufio.Reader, as a server
// reads a request body: Read returns the data alone, then io.EOF once the
// last chunk and the trailer section (skipped, up to MaxTrailerBytes) have
// been read, leaving the reader at the next message. A body cut short is
// io.ErrUnexpectedEOF; a malformed one ErrBadChunk.
type ChunkedReader struct {
	r      *bufio.Reader
	left   int64 // data bytes left in the current chunk
	inData bool  // a chunk's data has begun: its CRLF is due after it
	err    error // sticky: io.EOF at the end
}

// NewChunkedReader returns a ChunkedReader reading from r.
func NewChunkedReader(r *bufio.Reader) *ChunkedReader { return &ChunkedReader{r: r} }

func (c *ChunkedReader) Read(p []byte) (int, error) {
	for c.left == 0 && c.err == nil {
		c.err = c.next()
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if err != nil {
		c.err = unexpected(err)
		return n, c.err
	}
	return n, nil
}

// next reads the end of the chunk just read and the next chunk-size line,
// or the trailer section after the last chunk.
func (c *ChunkedReader) next() error {
	if c.inData {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return unexpected(err)
		}
		if !isLineEnd(line) {
			return ErrBadChunk
		}
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return unexpected(err)
	}
	size, ok := ChunkSize(line)
	if !ok {
		return ErrBadChunk
	}
	if size > 0 {
		c.left, c.inData = size, true
		return nil
	}
	n := 0
	for {
		line, err := c.r.ReadSlice('\n')
		n += len(line)
		if err != nil {
			return unexpected(err)
		}
		if n > MaxTrailerBytes {
			return ErrBadChunk
		}
		if isLineEnd(line) {
			return io.EOF
		}
	}
}

// unexpected maps the end of the source inside a body to
// io.ErrUnexpectedEOF, and a line longer than the reader to ErrBadChunk.
func unexpected(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	case errors.Is(err, bufio.ErrBufferFull):
		return ErrBadChunk
	}
	return err
}

// AppendChunkSize appends the chunk-size line of a chunk of n bytes (n > 0:
// a chunk of 0 bytes is the last one, LastChunk) to dst.
func AppendChunkSize(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, "\r\n"...)
}

// LastChunk ends a chunked body without trailers.
const LastChunk = "0\r\n\r\n"
