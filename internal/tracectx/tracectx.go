// Package tracectx carries a W3C Trace Context (https://www.w3.org/TR/trace-context/)
// through the stack: it parses and formats the traceparent header, makes
// the span id of each hop, keeps the hop's span in a context.Context, and
// adds its trace id to every log line made with that context (Handler).
//
// A request gets its trace id where it enters the stack (the edge, the lb,
// or the app when it is the entry point) and keeps it edge → lb → app →
// store → queue → worker; every hop replaces the header's parent-id with a
// span id of its own, so that a tracer (the OpenTelemetry SDK, later) can
// rebuild the tree. Nothing here records spans: it is the propagation that
// such a tracer plugs into, in the format it expects.
//
// The package is a leaf: the standard library only, no I/O, and Parse and
// AppendTo allocate nothing, so that the lb and the edge can call them on
// their hot paths.
package tracectx

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
)

// Names of the header fields, as a proxy writes them (HTTP field names are
// case-insensitive; the W3C spec writes them in lower case).
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// ErrMalformed is returned by Parse for a traceparent that breaks the
// spec's grammar or names an all-zero id: the receiver starts a new trace.
var ErrMalformed = errors.New("malformed traceparent")

// TraceID identifies a whole trace: every hop of one request. The zero
// value is invalid.
type TraceID [16]byte

// SpanID identifies one hop's work in a trace. The zero value is invalid.
type SpanID [8]byte

// IsValid reports whether id is not all zero.
func (id TraceID) IsValid() bool { return id != TraceID{} }

// IsValid reports whether id is not all zero.
func (id SpanID) IsValid() bool { return id != SpanID{} }

// String returns the 32 lower-case hex digits of id, as logs show it.
func (id TraceID) String() string { return hex.EncodeToString(id[:]) }

// String returns the 16 lower-case hex digits of id.
func (id SpanID) String() string { return hex.EncodeToString(id[:]) }

// FlagSampled is the one flag of version 00: the caller may have recorded
// its span, so the callee should too.
const FlagSampled byte = 0x01

// SpanContext is what a traceparent says: the trace, the sender's span
// (the field's parent-id) and the flags. In a context.Context it is the
// current hop's own span, the parent of the calls the hop makes.
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID
	Flags   byte
}

// IsValid reports whether both ids are set.
func (sc SpanContext) IsValid() bool { return sc.TraceID.IsValid() && sc.SpanID.IsValid() }

// Sampled reports whether the sampled flag is set.
func (sc SpanContext) Sampled() bool { return sc.Flags&FlagSampled != 0 }

// Child returns the span context of a hop that received sc: the same trace
// and flags, a new span id.
func (sc SpanContext) Child() SpanContext {
	return SpanContext{TraceID: sc.TraceID, SpanID: NewSpanID(), Flags: sc.Flags}
}

// New returns the span context of a new trace, sampled or not.
func New(sampled bool) SpanContext {
	sc := SpanContext{TraceID: NewTraceID(), SpanID: NewSpanID()}
	if sampled {
		sc.Flags = FlagSampled
	}
	return sc
}

// NewTraceID returns a random trace id. math/rand/v2's generator (ChaCha8,
// per thread) is unpredictable enough for ids that are no secret, costs
// no lock and no allocation.
func NewTraceID() TraceID {
	var id TraceID
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

// NewSpanID returns a random span id.
func NewSpanID() SpanID {
	var id SpanID
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

// Len is the length of a version-00 traceparent.
const Len = 55

// Parse reads a traceparent value (white space around it already trimmed):
//
//	version "-" trace-id "-" parent-id "-" trace-flags
//	00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//
// in lower-case hex only. Version ff and all-zero ids are refused. A
// version above 00 is read as the spec asks, by its first four fields,
// provided what follows them starts with "-"; version 00 must be exactly
// 55 bytes. Flags other than sampled are dropped: version 00 defines no
// other, and a hop that forwards the context must send them as zero.
func Parse[T string | []byte](v T) (SpanContext, error) {
	var sc SpanContext
	if len(v) < Len || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return sc, ErrMalformed
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff || (ver == 0 && len(v) != Len) || (len(v) > Len && v[Len] != '-') {
		return sc, ErrMalformed
	}
	for i := range sc.TraceID {
		if sc.TraceID[i], ok = hexByte(v[3+2*i], v[4+2*i]); !ok {
			return SpanContext{}, ErrMalformed
		}
	}
	for i := range sc.SpanID {
		if sc.SpanID[i], ok = hexByte(v[36+2*i], v[37+2*i]); !ok {
			return SpanContext{}, ErrMalformed
		}
	}
	flags, ok := hexByte(v[53], v[54])
	if !ok || !sc.IsValid() {
		return SpanContext{}, ErrMalformed
	}
	sc.Flags = flags & FlagSampled
	return sc, nil
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

// hexDigit reads a lower-case hex digit: the spec's HEXDIGLC.
func hexDigit(c byte) (byte, bool) {
	v := hexValue[c]
	return v, v != 0xff
}

// hexValue maps a lower-case hex digit to its value, anything else to
// 0xff. Read-only.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// AppendTo appends sc as a version-00 traceparent value to b.
func (sc SpanContext) AppendTo(b []byte) []byte {
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, sc.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sc.SpanID[:])
	return hex.AppendEncode(append(b, '-'), []byte{sc.Flags})
}

// String returns sc as a traceparent value.
func (sc SpanContext) String() string {
	var b [Len]byte
	return string(sc.AppendTo(b[:0]))
}

type contextKey struct{}

// NewContext returns ctx carrying sc as the current span.
func NewContext(ctx context.Context, sc SpanContext) context.Context {
	return context.WithValue(ctx, contextKey{}, sc)
}

// FromContext returns the current span of ctx, if it carries one.
func FromContext(ctx context.Context) (SpanContext, bool) {
	sc, ok := ctx.Value(contextKey{}).(SpanContext)
	return sc, ok
}

// Traceparent returns the traceparent to send on a call made with ctx (the
// current span is the callee's parent), or "" when ctx carries none.
func Traceparent(ctx context.Context) string {
	if sc, ok := FromContext(ctx); ok {
		return sc.String()
	}
	return ""
}

// Continue returns the span of a hop that received traceparent: a child
// of it when it parses, else a new sampled trace. ok reports whether it
// parsed (a hop that starts a trace drops the tracestate that came with
// an unusable traceparent: it belongs to another trace).
func Continue(traceparent string) (sc SpanContext, ok bool) {
	if traceparent != "" {
		if parent, err := Parse(traceparent); err == nil {
			return parent.Child(), true
		}
	}
	return New(true), false
}
