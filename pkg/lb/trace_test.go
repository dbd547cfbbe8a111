package lb_test

import (
	"net/http"
	"testing"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/lb"
)

const clientTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// sentTrace makes one GET through the balancer with the given fields and
// returns the traceparent and tracestate fields the backend received.
func sentTrace(t *testing.T, cfg lb.Config, fields map[string]string) (traceparent, tracestate []string) {
	t.Helper()
	app := startApp(t, "app-1")
	l := startLB(t, cfg, lb.NewStaticDiscovery(app.addr()))
	req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr()+"/", nil)
	for k, v := range fields {
		req.Header.Set(k, v)
	}
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.lastReq == nil {
		t.Fatal("the backend received no request")
	}
	return app.lastReq.Header.Values("Traceparent"), app.lastReq.Header.Values("Tracestate")
}

func TestTraceparentForwardedAsChild(t *testing.T) {
	tp, ts := sentTrace(t, testConfig(), map[string]string{"traceparent": clientTrace, "tracestate": "vendor=x"})
	if len(tp) != 1 {
		t.Fatalf("backend got traceparent %q, want one", tp)
	}
	parent, _ := tracectx.Parse(clientTrace)
	got, err := tracectx.Parse(tp[0])
	if err != nil {
		t.Fatalf("backend got traceparent %q: %v", tp[0], err)
	}
	if got.TraceID != parent.TraceID || got.Flags != parent.Flags {
		t.Errorf("backend got traceparent %q, want trace %s flags 01", tp[0], parent.TraceID)
	}
	if got.SpanID == parent.SpanID {
		t.Errorf("backend got traceparent %q, want the lb's own span as parent, not the client's %s", tp[0], parent.SpanID)
	}
	if len(ts) != 1 || ts[0] != "vendor=x" {
		t.Errorf("backend got tracestate %q, want [vendor=x]", ts)
	}
}

func TestTraceStartedWhenAbsent(t *testing.T) {
	for _, tc := range []struct {
		start   tracectx.Start
		fields  map[string]string
		want    bool // a traceparent reaches the backend
		sampled bool
	}{
		{tracectx.StartSampled, nil, true, true},
		{tracectx.StartUnsampled, nil, true, false},
		{tracectx.StartOff, nil, false, false},
		// Unusable: a new trace, without the tracestate of the old one.
		{tracectx.StartSampled, map[string]string{"traceparent": "00-garbage", "tracestate": "vendor=x"}, true, true},
		{tracectx.StartOff, map[string]string{"traceparent": "00-garbage"}, false, false},
		// Named by Connection, the field is hop-by-hop: not the lb's to keep.
		{tracectx.StartSampled, map[string]string{"traceparent": clientTrace, "Connection": "traceparent"}, true, true},
	} {
		cfg := testConfig()
		cfg.TraceStart = tc.start
		tp, ts := sentTrace(t, cfg, tc.fields)
		if !tc.want {
			if len(tp) != 0 {
				t.Errorf("TraceStart %s, fields %v: backend got traceparent %q, want none", tc.start, tc.fields, tp)
			}
			continue
		}
		if len(tp) != 1 {
			t.Fatalf("TraceStart %s, fields %v: backend got traceparent %q, want one", tc.start, tc.fields, tp)
		}
		sc, err := tracectx.Parse(tp[0])
		if err != nil || sc.Sampled() != tc.sampled {
			t.Errorf("TraceStart %s, fields %v: backend got traceparent %q (%v), want a valid one, sampled %v", tc.start, tc.fields, tp[0], err, tc.sampled)
		}
		if sc.TraceID.String() == "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("TraceStart %s, fields %v: backend got the client's trace %q, want a new one", tc.start, tc.fields, tp[0])
		}
		if len(ts) != 0 {
			t.Errorf("TraceStart %s, fields %v: backend got tracestate %q with a new trace, want none", tc.start, tc.fields, ts)
		}
	}
}

func TestTraceIDOnErrorPage(t *testing.T) {
	app := startApp(t, "app-1")
	cfg := testConfig()
	cfg.Retries = 0
	l := startLB(t, cfg, lb.NewStaticDiscovery(app.addr()))
	app.kill()
	req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr()+"/", nil)
	req.Header.Set("traceparent", clientTrace)
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("GET with the only backend dead: %d, want a 5xx", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Trace-Id"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("X-Trace-Id of the lb's %d page = %q, want the client's trace id", resp.StatusCode, got)
	}
}
