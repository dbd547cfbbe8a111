package cachetier

import (
	"context"
	"strings"
	"sync/atomic"
)

// Result says how a lookup was served.
type Result int32

// Results, in increasing order of what they cost: a request that made
// several lookups reports the costliest.
const (
	// Hit: served from the cache.
	Hit Result = iota + 1
	// Miss: loaded from the store (and filled, when that was safe).
	Miss
	// Bypass: the cache could not be used (no cache node up, or the
	// node failed), so the store answered.
	Bypass
)

// String returns HIT, MISS or BYPASS, as in the X-App-Cache header.
func (r Result) String() string {
	switch r {
	case Hit:
		return "HIT"
	case Miss:
		return "MISS"
	case Bypass:
		return "BYPASS"
	}
	return ""
}

// Trace collects the results of the lookups of one request, for its
// X-App-Cache header. Safe for concurrent use; the zero value is empty.
type Trace struct{ r atomic.Int32 }

// Record notes a lookup's result; the trace keeps the costliest.
func (tr *Trace) Record(r Result) {
	for {
		cur := tr.r.Load()
		if int32(r) <= cur || tr.r.CompareAndSwap(cur, int32(r)) {
			return
		}
	}
}

// Result returns the costliest result recorded, or 0 if none.
func (tr *Trace) Result() Result { return Result(tr.r.Load()) }

type traceKey struct{}

// WithTrace returns a context whose lookups record into tr. A nil tr stops
// recording (lookups that should not show in the response's header, such
// as the session's).
func WithTrace(ctx context.Context, tr *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, tr)
}

// TraceFrom returns the Trace attached to ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	tr, _ := ctx.Value(traceKey{}).(*Trace)
	return tr
}

// kindOf is the metrics label of a key: its first segment ("post" of
// "post:123").
func kindOf(key string) string {
	if i := strings.IndexByte(key, ':'); i > 0 {
		return key[:i]
	}
	return "other"
}

func (t *Tier) record(ctx context.Context, key string, r Result) {
	if tr := TraceFrom(ctx); tr != nil {
		tr.Record(r)
	}
	t.met.lookup(kindOf(key), r)
}

// Uncached records a lookup of a kind of key that the caller does not cache
// (a feed page past the cached ones): it counts, and shows in the
// request's header, as a BYPASS.
func (t *Tier) Uncached(ctx context.Context, kind string) {
	if tr := TraceFrom(ctx); tr != nil {
		tr.Record(Bypass)
	}
	t.met.lookup(kind, Bypass)
}
