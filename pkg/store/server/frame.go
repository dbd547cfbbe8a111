package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Replication frames. Everything a primary and a replica say to each other
// on a replication stream travels in frames:
//
//	frame = length(4 bytes, big endian) crc(4 bytes, big endian) payload
//
// where crc is the CRC-32C of payload and length its size (1 to
// MaxFrameSize). The payload's first byte is its type (frameEntry, ...); the
// rest is the type's body. A frame whose checksum does not match, whose
// length is out of range, or that ends early is an error: the reader drops
// the stream and resumes from its last applied LSN, so a corrupt byte costs
// a reconnect, never a wrong value.

// MaxFrameSize is the largest frame payload, in bytes: one log entry of a
// transaction of MaxRequestBytes fits with room to spare.
const MaxFrameSize = 32 << 20

// Frame types (the first payload byte).
const (
	frameEntry     = 'E' // EncodeEntry bytes: one log entry, primary -> replica
	frameHeartbeat = 'H' // uvarint LSN, uvarint epoch of the primary, primary -> replica
	frameAck       = 'A' // uvarint applied, uvarint durable LSN, replica -> primary
	frameSnapBegin = 'S' // uvarint LSN, uvarint epoch, uvarint size of a snapshot
	frameSnapData  = 'D' // raw bytes of the snapshot file, in order
	frameSnapEnd   = 'Z' // uvarint total bytes, 4 bytes CRC-32C of the whole file
	frameStop      = 'X' // a reason text: the primary ends the stream
)

// ErrBadFrame is wrapped by every frame decoding failure.
var ErrBadFrame = errors.New("bad replication frame")

// AppendFrame appends the frame of payload to b.
func AppendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, crcTable))
	return append(b, payload...)
}

// WriteFrame writes one frame holding payload.
func WriteFrame(w io.Writer, payload []byte) error {
	if len(payload) == 0 || len(payload) > MaxFrameSize {
		return fmt.Errorf("write frame: %d bytes: %w", len(payload), ErrBadFrame)
	}
	_, err := w.Write(AppendFrame(make([]byte, 0, 8+len(payload)), payload))
	return err
}

// ReadFrame reads one frame and returns its payload, checked. A stream that
// ends cleanly between frames returns io.EOF; one that ends inside a frame
// returns an error wrapping ErrBadFrame and io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) ([]byte, error) {
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: header: %w", ErrBadFrame, err)
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n == 0 || n > MaxFrameSize {
		return nil, fmt.Errorf("%w: length %d", ErrBadFrame, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: payload: %w", ErrBadFrame, err)
	}
	if got, want := crc32.Checksum(p, crcTable), binary.BigEndian.Uint32(head[4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrBadFrame, got, want)
	}
	return p, nil
}

// uvarints encodes a frame of type t with the given unsigned varints.
func uvarints(t byte, vs ...uint64) []byte {
	b := []byte{t}
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

// parseUvarints decodes exactly n unsigned varints from the body of a frame
// (after its type byte) and returns the rest.
func parseUvarints(body []byte, n int) ([]uint64, []byte, error) {
	out := make([]uint64, n)
	for i := range out {
		v, k := binary.Uvarint(body)
		if k <= 0 {
			return nil, nil, fmt.Errorf("%w: bad varint", ErrBadFrame)
		}
		out[i], body = v, body[k:]
	}
	return out, body, nil
}

// crcTable is CRC-32C, as the log entries use.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

func crc32Checksum(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

func crc32Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, crcTable, b) }
