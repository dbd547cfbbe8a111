package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"strconv"
	"sync"
)

// Image size of post-image uploads: a small photo-like cover, big enough
// that the thumbnail costs the app (or a worker) real decoding and
// scaling, small enough that the upload is not the figure.
const (
	imageWidth  = 480
	imageHeight = 320
)

// multipartBody is a request body sent as is, with its Content-Type; do
// sends any other non-nil body as JSON.
type multipartBody struct {
	contentType string
	body        []byte
}

// imageSource makes the PNGs of post-image. The picture is encoded once
// (encoding costs milliseconds the generator should not add to every
// upload's latency); each upload gets a tEXt chunk with its own number, so
// that every image is a distinct file (a store that keeps images by content
// hash sees a new one each time) while decoding to the same pixels.
type imageSource struct {
	once sync.Once
	png  []byte
	err  error
}

// upload returns the multipart body of upload n: the PNG as the form file
// "image", the field the blog reads.
func (s *imageSource) upload(n int64) (multipartBody, error) {
	s.once.Do(func() { s.png, s.err = encodeCover() })
	if s.err != nil {
		return multipartBody{}, fmt.Errorf("loadgen: cover image: %w", s.err)
	}
	img := withText(s.png, "loadgen", strconv.FormatInt(n, 10))
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("image", "cover-"+strconv.FormatInt(n, 10)+".png")
	if err != nil {
		return multipartBody{}, fmt.Errorf("loadgen: cover image: %w", err)
	}
	if _, err := fw.Write(img); err != nil {
		return multipartBody{}, fmt.Errorf("loadgen: cover image: %w", err)
	}
	if err := mw.Close(); err != nil {
		return multipartBody{}, fmt.Errorf("loadgen: cover image: %w", err)
	}
	return multipartBody{contentType: mw.FormDataContentType(), body: buf.Bytes()}, nil
}

// encodeCover draws a gradient with a little deterministic texture (a
// flat colour compresses to nothing and decodes in no time) and encodes it.
func encodeCover() ([]byte, error) {
	img := image.NewNRGBA(image.Rect(0, 0, imageWidth, imageHeight))
	x32 := uint32(2463534242)
	for y := range imageHeight {
		for x := range imageWidth {
			x32 ^= x32 << 13
			x32 ^= x32 >> 17
			x32 ^= x32 << 5
			n := uint8(x32 & 31)
			img.SetNRGBA(x, y, color.NRGBA{
				R: uint8(x*255/imageWidth) ^ n,
				G: uint8(y*255/imageHeight) ^ n,
				B: uint8((x+y)*255/(imageWidth+imageHeight)) ^ n,
				A: 255,
			})
		}
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// withText returns a copy of the PNG p with a tEXt chunk key=value before
// its last chunk (IEND, 12 bytes); decoders skip tEXt.
func withText(p []byte, key, value string) []byte {
	data := append(append([]byte(key), 0), value...)
	chunk := make([]byte, 0, 12+len(data))
	chunk = binary.BigEndian.AppendUint32(chunk, uint32(len(data)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	iend := len(p) - 12
	out := make([]byte, 0, len(p)+len(chunk))
	out = append(out, p[:iend]...)
	out = append(out, chunk...)
	return append(out, p[iend:]...)
}
