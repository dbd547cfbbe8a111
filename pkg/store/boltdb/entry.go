package boltdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/scalestack/scalestack/pkg/store"
)

// Entry is one record of the store's log: the effects of one committed
// transaction. The log is what replicas will stream (issue 6), so an entry
// carries everything a replica needs to apply it and to fence a stale
// primary: its LSN, the epoch of the primary that wrote it, and the puts and
// deletes in order. Conditions (OpCheck) are not logged: they were decided on
// the primary and have no effect to replay.
type Entry struct {
	LSN   uint64
	Epoch uint64
	Ops   []store.Op
}

// entryVersion is the first byte of every encoded entry, so that the format
// can change without guessing.
const entryVersion = 1

// Kind bytes of logged operations.
const (
	entryPut    = 1
	entryDelete = 2
)

// crcTable is the Castagnoli polynomial, hardware-accelerated on amd64/arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errBadEntry is wrapped by every decoding failure.
var errBadEntry = errors.New("bad log entry")

// EncodeEntry returns the binary form of e. The layout, all integers as
// minimal unsigned varints unless said otherwise:
//
//	entry = version(1 byte, =1) epoch lsn nops op* crc(4 bytes, big endian)
//	op    = kind(1 byte: 1 put, 2 delete) len(bucket) bucket len(key) key
//	        [len(value) value]   (put only)
//
// crc is CRC-32C of every byte before it. Ops of kind OpCheck are not
// encodable; EncodeEntry panics on them, since the DB never logs them.
func EncodeEntry(e Entry) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + 4
	for _, op := range e.Ops {
		n += 1 + 3*binary.MaxVarintLen64 + len(op.Bucket) + len(op.Key) + len(op.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, e.Epoch)
	b = binary.AppendUvarint(b, e.LSN)
	b = binary.AppendUvarint(b, uint64(len(e.Ops)))
	for _, op := range e.Ops {
		switch op.Kind {
		case store.OpPut:
			b = append(b, entryPut)
		case store.OpDelete:
			b = append(b, entryDelete)
		default:
			panic(fmt.Sprintf("store: EncodeEntry: op kind %q is not logged", op.Kind))
		}
		b = appendBytes(b, []byte(op.Bucket))
		b = appendBytes(b, []byte(op.Key))
		if op.Kind == store.OpPut {
			b = appendBytes(b, op.Value)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// DecodeEntry parses the output of EncodeEntry. It rejects anything that
// EncodeEntry would not have produced byte for byte (bad checksum, unknown
// version or kind, non-minimal varints, trailing bytes), so
// EncodeEntry(DecodeEntry(b)) == b whenever the error is nil. A put's Value is
// never nil.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 1+3+4 {
		return Entry{}, fmt.Errorf("%w: %d bytes is too short", errBadEntry, len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		return Entry{}, fmt.Errorf("%w: checksum %08x, want %08x", errBadEntry, got, sum)
	}
	if body[0] != entryVersion {
		return Entry{}, fmt.Errorf("%w: version %d", errBadEntry, body[0])
	}
	d := decoder{b: body[1:]}
	var e Entry
	e.Epoch = d.uvarint()
	e.LSN = d.uvarint()
	nops := d.uvarint()
	// Every op takes at least 3 bytes, which bounds the allocation below by
	// the input size, whatever nops claims.
	if d.err == nil && nops > uint64(len(d.b)/3) {
		d.fail("%d ops in %d bytes", nops, len(d.b))
	}
	if d.err == nil && nops > 0 {
		e.Ops = make([]store.Op, 0, nops)
	}
	for i := uint64(0); d.err == nil && i < nops; i++ {
		var op store.Op
		switch k := d.byte(); k {
		case entryPut:
			op.Kind = store.OpPut
		case entryDelete:
			op.Kind = store.OpDelete
		default:
			d.fail("op %d: kind %d", i, k)
		}
		op.Bucket = string(d.bytes())
		op.Key = string(d.bytes())
		if op.Kind == store.OpPut {
			op.Value = append([]byte{}, d.bytes()...)
		}
		e.Ops = append(e.Ops, op)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Entry{}, d.err
	}
	return e, nil
}

// decoder reads from b and remembers the first error, so the parser above
// reads straight through.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadEntry, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	// Only the minimal encoding is accepted, so that decoding is the exact
	// inverse of encoding.
	if n != len(binary.AppendUvarint(nil, v)) {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d over %d remaining bytes", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
