package server_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/scalestack/scalestack/pkg/store/boltdb"
	"github.com/scalestack/scalestack/pkg/store/server"
)

func TestFrameRoundTripAndCorruption(t *testing.T) {
	payload := []byte("Ehello log entry")
	b := server.AppendFrame(nil, payload)
	got, err := server.ReadFrame(bytes.NewReader(b))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("ReadFrame = %q, %v; want %q", got, err, payload)
	}
	// Every single flipped bit is detected.
	for i := range len(b) * 8 {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		if p, err := server.ReadFrame(bytes.NewReader(c)); err == nil && bytes.Equal(p, payload) {
			t.Fatalf("bit %d flipped: frame read back unchanged", i)
		} else if err == nil {
			t.Fatalf("bit %d flipped: ReadFrame = %q, nil; want an error", i, p)
		}
	}
	// Every truncation is detected; only the empty stream is a clean EOF.
	for n := range len(b) {
		_, err := server.ReadFrame(bytes.NewReader(b[:n]))
		switch {
		case n == 0 && err != io.EOF:
			t.Fatalf("empty stream: err = %v, want io.EOF", err)
		case n > 0 && !errors.Is(err, server.ErrBadFrame):
			t.Fatalf("truncated to %d bytes: err = %v, want ErrBadFrame", n, err)
		}
	}
}

func FuzzFrame(f *testing.F) {
	f.Add(server.AppendFrame(nil, []byte("E")))
	f.Add(server.AppendFrame(nil, []byte("H\x05\x01")))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			p, err := server.ReadFrame(r)
			if err != nil {
				if err != io.EOF && !errors.Is(err, server.ErrBadFrame) {
					t.Fatalf("ReadFrame error %v does not wrap ErrBadFrame", err)
				}
				return
			}
			// Whatever is accepted re-encodes to the same bytes.
			if re := server.AppendFrame(nil, p); !bytes.Contains(b, re) {
				t.Fatalf("accepted payload %q does not re-encode to its input", p)
			}
			if len(p) > 0 && p[0] == 'E' {
				_, _ = boltdb.DecodeEntry(p[1:]) // must not panic
			}
		}
	})
}
