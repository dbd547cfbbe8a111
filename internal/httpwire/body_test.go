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

type bufFlusher struct{ bytes.Buffer }

func (*bufFlusher) Flush() error { return nil }

func TestCopyChunked(t *testing.T) {
	body := "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
	var out bufFlusher
	src := bufio.NewReader(strings.NewReader(body))
	n, err := httpwire.CopyChunked(&out, src, true)
	if err != nil || n != 11 {
		t.Fatalf("httpwire.CopyChunked = %d, %v; want 11, nil", n, err)
	}
	if got, want := out.String(), strings.TrimSuffix(body, "NEXT"); got != want {
		t.Errorf("kept chunked = %q, want %q", got, want)
	}
	if rest, _ := src.ReadString(0); rest != "NEXT" {
		t.Errorf("left after body = %q, want NEXT", rest)
	}
	out.Reset()
	if _, err := httpwire.CopyChunked(&out, bufio.NewReader(strings.NewReader(body)), false); err != nil || out.String() != "hello world" {
		t.Errorf("decoded = %q, %v; want %q", out.String(), err, "hello world")
	}
	for _, bad := range []string{"zz\r\n", "5\r\nhello", "5\r\nhelloXX\r\n0\r\n\r\n", "fffffffffffffffff\r\n"} {
		if _, err := httpwire.CopyChunked(&out, bufio.NewReader(strings.NewReader(bad)), true); err == nil {
			t.Errorf("httpwire.CopyChunked(%q) = nil error, want one", bad)
		}
	}
}

func TestChunkedReader(t *testing.T) {
	tests := []struct {
		name, raw string
		want      string // the data, when wantErr is nil
		wantErr   error
	}{
		{name: "two chunks", raw: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", want: "hello world"},
		{name: "extensions and trailers", raw: "5;a=1\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n", want: "hello"},
		{name: "bare LF", raw: "3\nabc\n0\n\n", want: "abc"},
		{name: "upper-case hex", raw: "A\r\n0123456789\r\n0\r\n\r\n", want: "0123456789"},
		{name: "empty body", raw: "0\r\n\r\n", want: ""},
		{name: "not hex", raw: "zz\r\n", wantErr: httpwire.ErrBadChunk},
		{name: "no size", raw: ";ext\r\n", wantErr: httpwire.ErrBadChunk},
		{name: "size too long", raw: "fffffffffffffffff\r\n", wantErr: httpwire.ErrBadChunk},
		{name: "data longer than its size", raw: "5\r\nhelloXX\r\n0\r\n\r\n", wantErr: httpwire.ErrBadChunk},
		{name: "cut in the data", raw: "5\r\nhel", wantErr: io.ErrUnexpectedEOF},
		{name: "cut before the last chunk", raw: "5\r\nhello\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "cut in the trailer", raw: "0\r\nX-T: 1\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "trailer too large", raw: "0\r\n" + strings.Repeat("X-T: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", wantErr: httpwire.ErrBadChunk},
		{name: "line longer than the reader", raw: strings.Repeat("0", 5000) + "1\r\na\r\n0\r\n\r\n", wantErr: httpwire.ErrBadChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := bufio.NewReaderSize(strings.NewReader(tt.raw+"NEXT"), 4096)
			if tt.wantErr != nil {
				src = bufio.NewReaderSize(strings.NewReader(tt.raw), 4096)
			}
			got, err := io.ReadAll(httpwire.NewChunkedReader(src))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadAll = %q, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ReadAll = %q, %v; want %q", got, err, tt.want)
			}
			if rest, _ := io.ReadAll(src); string(rest) != "NEXT" {
				t.Errorf("left after the body = %q, want NEXT", rest)
			}
		})
	}
}

func TestAppendChunkSize(t *testing.T) {
	var b []byte
	for _, p := range []string{"a", strings.Repeat("b", 26), strings.Repeat("c", 4096)} {
		b = httpwire.AppendChunkSize(b, len(p))
		b = append(b, p...)
		b = append(b, "\r\n"...)
	}
	b = append(b, httpwire.LastChunk...)
	if !bytes.HasPrefix(b, []byte("1\r\na\r\n1a\r\n")) {
		t.Errorf("encoding starts %q, want 1\\r\\na\\r\\n1a\\r\\n", b[:12])
	}
	got, err := io.ReadAll(httpwire.NewChunkedReader(bufio.NewReader(bytes.NewReader(b))))
	if want := "a" + strings.Repeat("b", 26) + strings.Repeat("c", 4096); err != nil || string(got) != want {
		t.Errorf("decoded %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
}

// FuzzChunkedReader checks that the two chunked decoders, ChunkedReader
// (the edge's request bodies) and CopyChunked (the balancer's), agree on
// every input: the same data from a valid body, an error from an invalid
// one.
func FuzzChunkedReader(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT",
		"3\nabc\n0\n\n", "0\r\n\r\n", "zz\r\n", "5\r\nhello", "5\r\nhelloXX\r\n0\r\n\r\n",
		"fffffffffffffffff\r\n", "1\r\na\r\n0\r\nX: 1\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, gerr := io.ReadAll(httpwire.NewChunkedReader(bufio.NewReaderSize(strings.NewReader(raw), 1024)))
		var want bufFlusher
		_, werr := httpwire.CopyChunked(&want, bufio.NewReaderSize(strings.NewReader(raw), 1024), false)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("ChunkedReader: %v; CopyChunked: %v", gerr, werr)
		}
		if gerr == nil && string(got) != want.String() {
			t.Fatalf("ChunkedReader read %q; CopyChunked %q", got, want.String())
		}
	})
}
