package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/apptest"
)

// Decodes wait for room under MaxDecodingBytes: while other decodes hold
// it all, a thumbnail waits, and gives up when its context ends, without
// decoding.
func TestDecodesWaitForRoom(t *testing.T) {
	ctx := context.Background()
	s := New(apptest.NewMemStore())
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 600, 400))); err != nil {
		t.Fatal(err)
	}
	m, err := s.Put(ctx, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.decoding.Acquire(ctx, MaxDecodingBytes); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Thumbnail(wctx, m.Name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Thumbnail while decodes hold all the room: %v, want the context's deadline", err)
	}
	s.decoding.Release(MaxDecodingBytes)
	th, err := s.Thumbnail(ctx, m.Name)
	if err != nil || th.Width != ThumbWidth {
		t.Fatalf("Thumbnail once there is room = %+v, %v", th, err)
	}
	// Its room was given back.
	if !s.decoding.TryAcquire(MaxDecodingBytes) {
		t.Errorf("a finished thumbnail kept its share of MaxDecodingBytes")
	}
}
