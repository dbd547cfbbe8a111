package worker_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx/tracetest"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/worker"
)

const (
	requestTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	requestSpan  = "00f067aa0ba902b7"
)

// A job published under a request's trace is handled under it: the
// worker's line for it names the trace, and its store calls carry a child
// of the worker's span.
func TestJobCarriesTrace(t *testing.T) {
	e := newEnv(t)
	tap := &tracetest.Tap{}
	st := store.NewClient(store.ClientConfig{
		Resolver:   store.StaticResolver{{Name: "store-1", Addr: e.store.Addr(), Primary: true}},
		HTTPClient: &http.Client{Transport: tap},
	})
	t.Cleanup(func() { st.Close() })
	var logs syncbuf.Buffer
	e.startWorker(t, func(_ *worker.Config, d *worker.Deps) {
		d.Store = st
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	// An index job for a post that does not exist: the handler reads the
	// post, then removes it from the index.
	j := app.NewJob(app.JobIndex, app.PostPayload{PostID: app.NewJob(app.JobView, nil).ID})
	j.Trace = "00-" + requestTrace + "-" + requestSpan + "-01"
	if err := e.publisher(t).Enqueue(ctxT(t), j); err != nil {
		t.Fatal(err)
	}
	var line string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		lines := logs.Lines("msg=\"job done\"", "id="+j.ID)
		if len(lines) == 0 {
			return fmt.Errorf("no job done line for %s yet", j.ID)
		}
		line = lines[0]
		return nil
	})
	if !strings.Contains(line, "trace_id="+requestTrace) {
		t.Fatalf("worker line = %q, want trace_id=%s", line, requestTrace)
	}
	_, span, _ := strings.Cut(line, "span_id=")
	span, _, _ = strings.Cut(strings.TrimSpace(span), " ")
	if len(span) != 16 || span == requestSpan {
		t.Fatalf("worker line span_id = %q, want the worker's own span, not the request's %s", span, requestSpan)
	}
	sent := tap.Take()
	traced := 0
	for _, tp := range sent {
		if tp == "00-"+requestTrace+"-"+span+"-01" {
			traced++
		}
	}
	if traced == 0 {
		t.Errorf("store calls sent %q, want some with the job's trace and the worker's span %s as parent", sent, span)
	}
}
