package media_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// noisyJPEG is large enough to need several chunks.
func noisyJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPutGetThumbnail(t *testing.T) {
	ctx := context.Background()
	s := media.New(apptest.NewMemStore())
	data := noisyJPEG(t, 800, 400)
	if len(data) <= media.ChunkSize {
		t.Fatalf("test image of %d bytes fits one chunk; make it bigger", len(data))
	}
	m, err := s.Put(ctx, data)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !media.ValidName(m.Name) || m.Type != "image/jpeg" || m.Width != 800 || m.Chunks < 2 {
		t.Fatalf("Put = %+v", m)
	}
	_, got, err := s.Get(ctx, m.Name)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v; want the %d bytes put", len(got), err, len(data))
	}
	th, err := s.Thumbnail(ctx, m.Name)
	if err != nil {
		t.Fatalf("Thumbnail: %v", err)
	}
	if th.Width != media.ThumbWidth || th.Height != 240 || th.Type != "image/jpeg" {
		t.Errorf("thumbnail = %+v, want %dx240 JPEG", th, media.ThumbWidth)
	}
	if _, err := s.Put(ctx, []byte("<html>not an image</html>")); !errors.Is(err, svc.ErrUnsupported) {
		t.Errorf("Put(html) error = %v, want ErrUnsupported", err)
	}
	if _, _, err := s.Get(ctx, "00000000000000000000000000000000.png"); !errors.Is(err, svc.ErrNotFound) {
		t.Errorf("Get(missing) error = %v, want ErrNotFound", err)
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"0123456789abcdef0123456789abcdef.png": true,
		"0123456789abcdef0123456789abcdef.jpg": true,
		"0123456789ABCDEF0123456789abcdef.png": false,
		"0123456789abcdef0123456789abcdef.exe": false,
		"../../store.db":                       false,
		"":                                     false,
	} {
		if got := media.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
