package cdn_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/cdn"
)

const clientTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// tracingOrigin is an origin that remembers the trace fields of the last
// request it received and answers with an X-Trace-Id of its own, as the
// app does.
type tracingOrigin struct {
	*origin
	mu          sync.Mutex
	traceparent []string
	tracestate  []string
}

func newTracingOrigin(t *testing.T, cacheControl string) *tracingOrigin {
	o := &tracingOrigin{}
	o.origin = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.traceparent, o.tracestate = r.Header.Values("Traceparent"), r.Header.Values("Tracestate")
		o.mu.Unlock()
		w.Header().Set("Cache-Control", cacheControl)
		if sc, err := tracectx.Parse(r.Header.Get("Traceparent")); err == nil {
			w.Header().Set("X-Trace-Id", sc.TraceID.String())
		}
		w.Write([]byte("body"))
	})
	return o
}

func (o *tracingOrigin) got() (traceparent, tracestate []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.traceparent, o.tracestate
}

func TestTraceparentToOrigin(t *testing.T) {
	o := newTracingOrigin(t, "no-store")
	e := newEdge(t, o.URL, nil)
	get(t, e, "/a", "traceparent", clientTrace, "tracestate", "vendor=x")
	tp, ts := o.got()
	parent, _ := tracectx.Parse(clientTrace)
	if len(tp) != 1 {
		t.Fatalf("origin got traceparent %q, want one", tp)
	}
	sc, err := tracectx.Parse(tp[0])
	if err != nil || sc.TraceID != parent.TraceID || sc.SpanID == parent.SpanID || !sc.Sampled() {
		t.Errorf("origin got traceparent %q (%v), want trace %s with the edge's own span as parent", tp[0], err, parent.TraceID)
	}
	if len(ts) != 1 || ts[0] != "vendor=x" {
		t.Errorf("origin got tracestate %q, want [vendor=x]", ts)
	}

	// None, or an unusable one: a new trace, without the old tracestate.
	for _, kv := range [][]string{nil, {"traceparent", "00-nonsense", "tracestate", "vendor=x"}} {
		get(t, e, "/b", kv...)
		tp, ts := o.got()
		if len(tp) != 1 {
			t.Fatalf("request with %q: origin got traceparent %q, want one", kv, tp)
		}
		if sc, err := tracectx.Parse(tp[0]); err != nil || sc.TraceID == parent.TraceID || !sc.Sampled() {
			t.Errorf("request with %q: origin got traceparent %q (%v), want a new sampled trace", kv, tp[0], err)
		}
		if len(ts) != 0 {
			t.Errorf("request with %q: origin got tracestate %q, want none", kv, ts)
		}
	}
}

func TestTraceStartOff(t *testing.T) {
	o := newTracingOrigin(t, "no-store")
	e := newEdge(t, o.URL, func(c *cdn.Config, _ *cdn.Deps) { c.TraceStart = tracectx.StartOff })
	get(t, e, "/a")
	if tp, _ := o.got(); len(tp) != 0 {
		t.Errorf("TraceStart off: origin got traceparent %q, want none", tp)
	}
}

// A stored response answers later requests, which are not the trace that
// filled it.
func TestStoredResponseHasNoTraceID(t *testing.T) {
	o := newTracingOrigin(t, "public, max-age=60")
	e := newEdge(t, o.URL, nil)
	miss := get(t, e, "/page", "traceparent", clientTrace)
	if got := miss.header.Get("X-Trace-Id"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("miss: X-Trace-Id %q, want the request's trace id", got)
	}
	hit := get(t, e, "/page")
	wantCache(t, "second GET", hit, cdn.Hit, "body")
	if got := hit.header.Get("X-Trace-Id"); got != "" {
		t.Errorf("hit: X-Trace-Id %q, want none (the fill's trace is not this request's)", got)
	}
}
