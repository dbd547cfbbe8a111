package media_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"runtime"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// pngHeader returns the start of a PNG file that declares a w×h image of
// bit depth and colour type: signature and IHDR, then an empty IDAT and
// IEND. It is a few dozen bytes whatever size it declares.
func pngHeader(w, h uint32, depth, colorType, interlace byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		b.Write(n[:])
		b.WriteString(typ)
		b.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		b.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9], ihdr[12] = depth, colorType, interlace
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c}) // a zlib header and nothing after it
	chunk("IEND", nil)
	return b.Bytes()
}

// jpegHeader returns the start of a JPEG file: SOI, APP0 and a frame header
// (SOF0, or SOF2 when progressive) for a w×h image with the given
// components' sampling factors (0x22 is 2×2).
func jpegHeader(w, h uint16, progressive bool, sampling ...byte) []byte {
	sof := []byte{0xFF, 0xC0}
	if progressive {
		sof[1] = 0xC2
	}
	seg := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(len(sampling))}
	for i, s := range sampling {
		seg = append(seg, byte(i+1), s, 0)
	}
	n := len(seg) + 2
	out := []byte{0xFF, 0xD8, // SOI, then a JFIF APP0 segment, as cameras write
		0xFF, 0xE0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	out = append(out, sof...)
	out = append(out, byte(n>>8), byte(n))
	return append(out, seg...)
}

// What an image may cost to decode, from its header: a small file that
// declares a huge or deep bitmap is refused; ordinary photos are not.
func TestDecodeCost(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"the probe: 6300x6300 16-bit RGBA PNG (39.7 MP, 317 MB)", pngHeader(6300, 6300, 16, 6, 0), false},
		{"3000x3000 8-bit RGBA PNG", pngHeader(3000, 3000, 8, 6, 0), true},
		{"4000x4000 8-bit RGBA PNG", pngHeader(4000, 4000, 8, 6, 0), false},
		{"3000x3000 8-bit RGBA PNG, interlaced", pngHeader(3000, 3000, 8, 6, 1), false},
		{"6000x6000 8-bit grey PNG", pngHeader(6000, 6000, 8, 0, 0), true},
		{"6000x6000 16-bit grey PNG", pngHeader(6000, 6000, 16, 0, 0), false},
		{"a thumbnail's worth, 1x40M PNG", pngHeader(1, 40_000_000, 8, 0, 0), false},
		{"over MaxPixels", pngHeader(7000, 7000, 1, 0, 0), false},
		{"4000x3000 baseline JPEG, 4:2:0 (a phone photo)", jpegHeader(4000, 3000, false, 0x22, 0x11, 0x11), true},
		{"6000x4000 baseline JPEG, 4:2:0", jpegHeader(6000, 4000, false, 0x22, 0x11, 0x11), true},
		{"6000x4000 baseline JPEG, 4:4:4", jpegHeader(6000, 4000, false, 0x11, 0x11, 0x11), false},
		{"4000x3000 progressive JPEG, 4:2:0", jpegHeader(4000, 3000, true, 0x22, 0x11, 0x11), false},
		{"2000x1500 progressive JPEG, 4:2:0", jpegHeader(2000, 1500, true, 0x22, 0x11, 0x11), true},
	}
	for _, tt := range tests {
		cost, err := media.DecodeCost(tt.data)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: DecodeCost = %d, %v; want it accepted", tt.name, cost, err)
		case !tt.ok && !errors.Is(err, svc.ErrTooLarge):
			t.Errorf("%s: DecodeCost = %d MiB, %v; want ErrTooLarge", tt.name, cost>>20, err)
		case tt.ok && cost > media.MaxDecodeBytes:
			t.Errorf("%s: DecodeCost = %d, accepted over MaxDecodeBytes", tt.name, cost)
		}
	}
}

// A decompression bomb already in the store (put there before the limit
// existed, or not through Put) is refused by Thumbnail from its header:
// nothing is decoded, so the heap does not grow by the 317 MB it declares.
func TestThumbnailRefusesStoredBomb(t *testing.T) {
	ctx := context.Background()
	st := apptest.NewMemStore()
	s := media.New(st)
	bomb := pngHeader(6300, 6300, 16, 6, 0)
	name := "0123456789abcdef0123456789abcdef.png"
	meta, _ := json.Marshal(media.Meta{Name: name, Type: "image/png", Size: len(bomb), Width: 6300, Height: 6300, Chunks: 1})
	if _, err := st.Txn(ctx, store.Put("media.chunks", name+"/0000", bomb), store.Put("media.meta", name, meta)); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := s.Thumbnail(ctx, name)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, svc.ErrTooLarge) {
		t.Fatalf("Thumbnail of a stored bomb: %v, want ErrTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("Thumbnail of a stored bomb allocated %d MiB, want it refused before decoding", grew>>20)
	}
}
