// Package media is the blog's media service: uploaded images stored in the
// store under a name derived from their content (so a URL names one exact
// image forever and can be cached as immutable), and thumbnails made from
// them. It owns the buckets whose names start with "media.".
package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // uploads may be GIF
	"image/jpeg"
	"image/png"
	"net/http"
	"strings"

	"golang.org/x/image/draw"

	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

const (
	bucketMeta   = "media.meta"   // name -> Meta; written last, so present means complete
	bucketChunks = "media.chunks" // name/%04d -> bytes
)

// Limits.
const (
	// MaxBytes is the largest image accepted.
	MaxBytes = 5 << 20
	// MaxPixels bounds width×height, so a small file that decodes to a
	// huge bitmap (a "decompression bomb") is refused before decoding.
	MaxPixels = 40_000_000
	// ChunkSize splits an image over several store values, each well under
	// the store's value limit.
	ChunkSize = 128 << 10
	// ThumbWidth is the width of thumbnails, in pixels.
	ThumbWidth = 480
)

// Meta describes a stored image.
type Meta struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Size   int    `json:"size"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Chunks int    `json:"chunks"`
}

var extByType = map[string]string{"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}

// Service implements the media service over a store.
type Service struct{ st store.Store }

// New returns the service.
func New(st store.Store) *Service { return &Service{st: st} }

// Put stores an image and returns its name ("<hash>.<ext>"). Storing the
// same bytes twice stores them once. Errors: svc.ErrUnsupported for
// anything but PNG, JPEG or GIF, svc.ErrTooLarge past the limits.
func (s *Service) Put(ctx context.Context, data []byte) (Meta, error) {
	if len(data) > MaxBytes {
		return Meta{}, fmt.Errorf("image of %d bytes: %w", len(data), svc.ErrTooLarge)
	}
	typ := http.DetectContentType(data)
	ext, ok := extByType[typ]
	if !ok {
		return Meta{}, fmt.Errorf("content type %q: %w", typ, svc.ErrUnsupported)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return Meta{}, fmt.Errorf("decode image: %v: %w", err, svc.ErrUnsupported)
	}
	if cfg.Width*cfg.Height > MaxPixels {
		return Meta{}, fmt.Errorf("image of %dx%d pixels: %w", cfg.Width, cfg.Height, svc.ErrTooLarge)
	}
	sum := sha256.Sum256(data)
	m := Meta{Name: hex.EncodeToString(sum[:16]) + "." + ext, Type: typ, Size: len(data),
		Width: cfg.Width, Height: cfg.Height, Chunks: (len(data) + ChunkSize - 1) / ChunkSize}
	if _, err := s.Stat(ctx, m.Name); err == nil {
		return m, nil
	}
	for i := 0; i < m.Chunks; i++ {
		part := data[i*ChunkSize : min(len(data), (i+1)*ChunkSize)]
		if _, err := s.st.Txn(ctx, store.Put(bucketChunks, chunkKey(m.Name, i), part)); err != nil {
			return Meta{}, fmt.Errorf("media: store chunk: %w", err)
		}
	}
	if _, err := s.st.Txn(ctx, store.Put(bucketMeta, m.Name, kv.MustJSON(m))); err != nil {
		return Meta{}, fmt.Errorf("media: store meta: %w", err)
	}
	return m, nil
}

func chunkKey(name string, i int) string { return fmt.Sprintf("%s/%04d", name, i) }

// ValidName reports whether name has the shape of a media name.
func ValidName(name string) bool {
	hash, ext, ok := strings.Cut(name, ".")
	if !ok || len(hash) != 32 {
		return false
	}
	if _, err := hex.DecodeString(hash); err != nil || strings.ToLower(hash) != hash {
		return false
	}
	return ext == "png" || ext == "jpg" || ext == "gif"
}

// Stat returns an image's metadata, or svc.ErrNotFound.
func (s *Service) Stat(ctx context.Context, name string) (Meta, error) {
	if !ValidName(name) {
		return Meta{}, fmt.Errorf("image %q: %w", name, svc.ErrNotFound)
	}
	var m Meta
	_, err := kv.GetJSON(ctx, s.st, bucketMeta, name, &m)
	if errors.Is(err, store.ErrNotFound) {
		return Meta{}, fmt.Errorf("image %q: %w", name, svc.ErrNotFound)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("media: stat: %w", err)
	}
	return m, nil
}

// Get returns an image's metadata and bytes, or svc.ErrNotFound.
func (s *Service) Get(ctx context.Context, name string) (Meta, []byte, error) {
	m, err := s.Stat(ctx, name)
	if err != nil {
		return Meta{}, nil, err
	}
	data := make([]byte, 0, m.Size)
	for i := 0; i < m.Chunks; i++ {
		part, err := s.st.Get(ctx, bucketChunks, chunkKey(name, i))
		if err != nil {
			return Meta{}, nil, fmt.Errorf("media: read chunk %d of %s: %w", i, name, err)
		}
		data = append(data, part...)
	}
	return m, data, nil
}

// Thumbnail makes (or finds) the thumbnail of an image: at most ThumbWidth
// pixels wide, PNG for PNG sources (keeps transparency), JPEG otherwise.
// The result is content-addressed, so making it twice stores it once.
func (s *Service) Thumbnail(ctx context.Context, name string) (Meta, error) {
	m, data, err := s.Get(ctx, name)
	if err != nil {
		return Meta{}, err
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return Meta{}, fmt.Errorf("media: decode %s: %w", name, err)
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > ThumbWidth {
		w, h = ThumbWidth, max(1, h*ThumbWidth/w)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	var out bytes.Buffer
	switch m.Type {
	case "image/png":
		err = png.Encode(&out, dst)
	default:
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 82})
	}
	if err != nil {
		return Meta{}, fmt.Errorf("media: encode thumbnail: %w", err)
	}
	return s.Put(ctx, out.Bytes())
}
