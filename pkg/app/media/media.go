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
	"image/color"
	_ "image/gif" // uploads may be GIF
	"image/jpeg"
	"image/png"
	"net/http"
	"strings"

	"golang.org/x/image/draw"
	"golang.org/x/sync/semaphore"

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
	// MaxPixels bounds width×height, checked from the header before
	// anything is decoded.
	MaxPixels = 40_000_000
	// MaxDecodeBytes bounds the memory one image may take to be decoded and
	// made into a thumbnail (DecodeCost: the bitmap at its format's bytes
	// per pixel, and the scaler's buffers), checked from the header at
	// upload (413) and again before every decode. Neither MaxBytes nor
	// MaxPixels bounds it: a 300 KB PNG of 6300×6300 16-bit pixels is under
	// both and decodes to 317 MB. 64 MiB takes a 20-megapixel baseline JPEG
	// photo, or an 8-bit RGBA PNG of 12 megapixels; more takes bigger
	// images at the price of more memory for each decode.
	MaxDecodeBytes = 64 << 20
	// MaxDecodingBytes bounds the memory the decodes of one Service (one
	// app or worker process) hold at once: a decode waits until its cost
	// fits (or its context ends). Twice MaxDecodeBytes: two of the largest
	// images at a time, more smaller ones.
	MaxDecodingBytes = 2 * MaxDecodeBytes
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
type Service struct {
	st store.Store
	// decoding holds the bytes of the decodes under way (MaxDecodingBytes).
	decoding *semaphore.Weighted
}

// New returns the service.
func New(st store.Store) *Service {
	return &Service{st: st, decoding: semaphore.NewWeighted(MaxDecodingBytes)}
}

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
	if _, err := DecodeCost(data); err != nil {
		return Meta{}, err
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
//
// The stored image's cost is checked again before decoding (it may have
// been stored before the limit, or by another way than Put), and the
// decode waits for room under MaxDecodingBytes. Errors: svc.ErrTooLarge or
// svc.ErrUnsupported for an image that will never decode within the
// limits; the context's error if it ends while waiting.
func (s *Service) Thumbnail(ctx context.Context, name string) (Meta, error) {
	m, data, err := s.Get(ctx, name)
	if err != nil {
		return Meta{}, err
	}
	cost, err := DecodeCost(data)
	if err != nil {
		return Meta{}, fmt.Errorf("media: thumbnail of %s: %w", name, err)
	}
	if err := s.decoding.Acquire(ctx, cost); err != nil {
		return Meta{}, fmt.Errorf("media: wait to decode %s: %w", name, err)
	}
	defer s.decoding.Release(cost)
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return Meta{}, fmt.Errorf("media: decode %s: %w", name, err)
	}
	b := src.Bounds()
	tw, th := thumbSize(b.Dx(), b.Dy())
	if pw, ph, shrink := preSize(b.Dx(), b.Dy(), tw, th); shrink {
		mid := image.NewRGBA(image.Rect(0, 0, pw, ph))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), src, b, draw.Src, nil)
		src, b = mid, mid.Bounds()
	}
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
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

// thumbSize is the size of the thumbnail of a w×h image.
func thumbSize(w, h int) (int, int) {
	if w > ThumbWidth {
		return ThumbWidth, max(1, h*ThumbWidth/w)
	}
	return w, h
}

// preSize is the size a w×h image is first shrunk to, cheaply
// (ApproxBiLinear needs no buffer), on its way to a tw×th thumbnail: at
// most twice the thumbnail each way. The quality scaler (CatmullRom)
// allocates 32 bytes per thumbnail column per source row, 46 MB for a
// 4000×3000 photo read whole; from the shrunk copy, 11 MB. shrink is false
// when the image is already that small.
func preSize(w, h, tw, th int) (pw, ph int, shrink bool) {
	pw, ph = min(w, 2*tw), min(h, 2*th)
	return pw, ph, pw < w || ph < h
}

// DecodeCost returns how many bytes decoding an image and making its
// thumbnail may take, from its header alone: the decoded bitmap (bytes per
// pixel as Go's decoders store the image's format and colour model; a
// progressive JPEG keeps its coefficients too, an interlaced PNG its
// passes), the shrunk copy, the scaler's buffer and the thumbnail. It is
// an upper bound, not a measurement. Errors: svc.ErrUnsupported if the
// header cannot be read, svc.ErrTooLarge (as a *svc.FieldError for the
// image) past MaxPixels or MaxDecodeBytes.
func DecodeCost(data []byte) (int64, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("decode image: %v: %w", err, svc.ErrUnsupported)
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	if w <= 0 || h <= 0 {
		return 0, fmt.Errorf("image of %dx%d pixels: %w", w, h, svc.ErrUnsupported)
	}
	if w*h > MaxPixels {
		return 0, &svc.FieldError{Field: "image", Err: svc.ErrTooLarge,
			Msg: fmt.Sprintf("has %dx%d pixels; at most %d million are accepted", w, h, MaxPixels/1_000_000)}
	}
	cost := bitmapBytes(data, format, cfg.ColorModel, w, h)
	tw, th := thumbSize(cfg.Width, cfg.Height)
	pw, ph, shrink := preSize(cfg.Width, cfg.Height, tw, th)
	if shrink {
		cost += int64(pw) * int64(ph) * 4
	}
	cost += int64(tw)*int64(ph)*32 + int64(tw)*int64(th)*4
	if cost > MaxDecodeBytes {
		return cost, &svc.FieldError{Field: "image", Err: svc.ErrTooLarge,
			Msg: fmt.Sprintf("of %dx%d pixels would take %d MiB to process; at most %d MiB (fewer pixels, or 8 bits per channel)",
				w, h, (cost+1<<20-1)>>20, MaxDecodeBytes>>20)}
	}
	return cost, nil
}

// bitmapBytes is what decoding a w×h image of format and model takes.
func bitmapBytes(data []byte, format string, model color.Model, w, h int64) int64 {
	switch format {
	case "png":
		bpp := int64(8) // 16-bit colour with alpha, and anything unknown
		if _, ok := model.(color.Palette); ok {
			bpp = 1
		} else {
			switch model {
			case color.GrayModel:
				bpp = 1
			case color.Gray16Model:
				bpp = 2
			case color.RGBAModel, color.NRGBAModel:
				bpp = 4
			}
		}
		// An interlaced PNG is decoded pass by pass into images of its own,
		// then copied into the whole: twice the bitmap.
		if len(data) > 28 && string(data[12:16]) == "IHDR" && data[28] == 1 {
			bpp *= 2
		}
		return w * h * bpp
	case "gif":
		return w * h // paletted, one byte a pixel (the first frame only)
	case "jpeg":
		return jpegBytes(data, w, h)
	}
	return w * h * 8
}

// jpegBytes is what decoding a w×h JPEG takes: each component at its own
// resolution (chroma is usually subsampled), one byte a sample, and for a
// progressive JPEG its coefficients as well (four bytes a sample). Four
// components (CMYK) are decoded to 4 bytes a pixel from a 4-sample copy.
// Without a readable frame header, the worst case: three full components,
// progressive.
func jpegBytes(data []byte, w, h int64) int64 {
	comps, progressive, ok := jpegFrame(data)
	if !ok {
		return w * h * 3 * 5
	}
	per := int64(1)
	if progressive {
		per = 5
	}
	if len(comps) == 4 {
		return w*h*4*per + w*h*4
	}
	hmax, vmax := 1, 1
	for _, c := range comps {
		hmax, vmax = max(hmax, c[0]), max(vmax, c[1])
	}
	var n int64
	for _, c := range comps {
		cw := (w*int64(c[0]) + int64(hmax) - 1) / int64(hmax)
		ch := (h*int64(c[1]) + int64(vmax) - 1) / int64(vmax)
		n += cw * ch * per
	}
	return n
}

// jpegFrame reads a JPEG's frame header: each component's horizontal and
// vertical sampling factors, and whether it is progressive. It walks the
// markers from the start of the file to the first SOF.
func jpegFrame(data []byte) (comps [][2]int, progressive, ok bool) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, false, false
	}
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			return nil, false, false
		}
		marker := data[i+1]
		switch {
		case marker == 0xFF: // fill byte
			i++
			continue
		case marker == 0x01 || marker >= 0xD0 && marker <= 0xD7: // no length
			i += 2
			continue
		}
		n := int(data[i+2])<<8 | int(data[i+3])
		if n < 2 || i+2+n > len(data) {
			return nil, false, false
		}
		seg := data[i+4 : i+2+n]
		switch marker {
		case 0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF:
			if len(seg) < 6 {
				return nil, false, false
			}
			nc := int(seg[5])
			if nc < 1 || len(seg) < 6+3*nc {
				return nil, false, false
			}
			for c := 0; c < nc; c++ {
				hv := seg[6+3*c+1]
				comps = append(comps, [2]int{max(int(hv>>4), 1), max(int(hv&0x0F), 1)})
			}
			return comps, marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE, true
		case 0xDA: // start of scan before any frame header
			return nil, false, false
		}
		i += 2 + n
	}
	return nil, false, false
}
