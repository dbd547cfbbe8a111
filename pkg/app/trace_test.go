package app_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx/tracetest"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/store"
)

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	callerHeader = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// A request with a traceparent: its trace id comes back in X-Trace-Id and
// is on its access line, and the store calls it makes (inline jobs
// included) carry a child of the app's span.
func TestTraceThroughApp(t *testing.T) {
	srv := startStoreServer(t, "127.0.0.1:0", t.TempDir())
	t.Cleanup(func() { srv.Close() })
	tap := &tracetest.Tap{}
	client := store.NewClient(store.ClientConfig{
		Resolver:   store.StaticResolver{{Name: "primary-1", Addr: srv.Addr(), Primary: true}},
		HTTPClient: &http.Client{Transport: tap},
	})
	t.Cleanup(func() { client.Close() })
	var logs syncbuf.Buffer
	s := newStackOn(t, client, func(_ *app.Config, d *app.Deps) {
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := s.client(t)

	tap.Take()
	r := c.json("POST", "/api/v1/signup", map[string]string{"handle": "tracy", "email": "tracy@example.com", "password": "correct horse"},
		"traceparent", callerHeader)
	want(t, "signup", r, http.StatusCreated)
	if got := r.Header.Get(app.HeaderTraceID); got != callerTrace {
		t.Errorf("X-Trace-Id = %q, want the caller's trace %s", got, callerTrace)
	}
	appSpan := accessSpan(t, &logs, "/api/v1/signup")

	sent := tap.Take()
	if len(sent) == 0 {
		t.Fatal("the signup made no store call")
	}
	for _, tp := range sent {
		if want := "00-" + callerTrace + "-" + appSpan + "-01"; tp != want {
			t.Errorf("store call traceparent = %q, want %q (a child of the app's span)", tp, want)
		}
	}
}

// accessSpan returns the span_id of the one access line of path, which
// must name the caller's trace, and checks that it is the app's own span.
func accessSpan(t *testing.T, logs *syncbuf.Buffer, path string) string {
	t.Helper()
	lines := logs.Lines("msg=request", "path="+path+" ")
	if len(lines) != 1 || !strings.Contains(lines[0], "trace_id="+callerTrace) {
		t.Fatalf("access lines of %s = %q, want one with trace_id=%s\nlog:\n%s", path, lines, callerTrace, logs.String())
	}
	_, span, _ := strings.Cut(lines[0], "span_id=")
	span, _, _ = strings.Cut(strings.TrimSpace(span), " ")
	if len(span) != 16 || span == callerSpan {
		t.Fatalf("access line span_id = %q, want the app's own span, not the caller's %s", span, callerSpan)
	}
	return span
}

// With a queue, the job a request causes goes to the queue with the
// request's trace, the app's span as its parent.
func TestTraceOnJobs(t *testing.T) {
	var logs syncbuf.Buffer
	q := newGatedQueue()
	q.open()
	s := openQueueStack(t, openDB(t), q, func(_ *app.Config, d *app.Deps) {
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r := s.client(t).json("POST", "/api/v1/signup", map[string]string{"handle": "tracy", "email": "tracy@example.com", "password": "correct horse"},
		"traceparent", callerHeader)
	want(t, "signup", r, http.StatusCreated)
	appSpan := accessSpan(t, &logs, "/api/v1/signup")
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if len(q.ids(app.JobWelcome)) == 0 {
			return errString("no welcome job published yet")
		}
		return nil
	})
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, j := range q.got {
		if want := "00-" + callerTrace + "-" + appSpan + "-01"; j.Kind == app.JobWelcome && j.Trace != want {
			t.Errorf("welcome job Trace = %q, want %q", j.Trace, want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// The app is the entry point at stages 1 and 2: a request without a
// traceparent, or with one it cannot use, starts a trace of its own.
func TestTraceStartedByApp(t *testing.T) {
	s := newStack(t)
	c := s.client(t)
	seen := map[string]bool{}
	for _, h := range [][]string{nil, {"traceparent", "00-not-a-trace"}, nil} {
		r := c.get("/", h...)
		want(t, "home", r, http.StatusOK)
		id := r.Header.Get(app.HeaderTraceID)
		if _, err := tracectx.Parse("00-" + id + "-" + callerSpan + "-01"); err != nil || seen[id] {
			t.Errorf("GET / with %q: X-Trace-Id = %q (%v), want a new valid trace id", h, id, err)
		}
		seen[id] = true
	}
}
