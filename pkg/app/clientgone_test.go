package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/store"
)

// stalledStore is a store whose reads hang, as a paused store node's do,
// until the caller's context ends; they then fail as store.Client's do.
type stalledStore struct {
	store.Store
	entered chan struct{} // receives once per read that hangs
}

func (s *stalledStore) stall(ctx context.Context) error {
	s.entered <- struct{}{}
	<-ctx.Done()
	return fmt.Errorf("node db-1 (127.0.0.2:7070): %w: %w", store.ErrUnavailable, ctx.Err())
}

func (s *stalledStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	return nil, s.stall(ctx)
}

func (s *stalledStore) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	return nil, s.stall(ctx)
}

// Issue 17: a request its client gave up on while the store was paused
// was logged as an ERROR "store unavailable ... context canceled" with
// status 503. Nothing of the app failed: it is a 499 at debug, counted
// apart from the 503s.
func TestClientThatGivesUpIsA499NotAnError(t *testing.T) {
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	st := &stalledStore{Store: apptest.NewMemStore(), entered: make(chan struct{}, 16)}
	s := newStackOn(t, st, func(_ *app.Config, d *app.Deps) {
		d.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		d.Metrics = reg
	})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Server.URL+"/api/v1/posts", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-st.entered // the app waits on the store
	cancel()     // and the user gives up
	if err := <-errc; err == nil {
		t.Fatal("the request answered although its client gave up")
	}
	testwait.Until(t, 5*time.Second, "the app counting the abandoned request", func() bool {
		return s.App.Status().(app.Status).ClientGone == 1
	})

	if got := s.App.Status().(app.Status); got.Errors != 0 {
		t.Errorf("Status().Errors = %d, want 0: a client that left is no 5xx of the app", got.Errors)
	}
	out := logs.String()
	if strings.Contains(out, "level=ERROR") || strings.Contains(out, "level=WARN") {
		t.Errorf("log has an error or warning for a client that gave up:\n%s", out)
	}
	if !strings.Contains(out, `msg="app: client gave up"`) || !strings.Contains(out, "status=499") {
		t.Errorf("log lacks the debug line 'client gave up' with status=499:\n%s", out)
	}
	if got := requestsWithCode(t, reg, "499"); got != 1 {
		t.Errorf("scalestack_app_requests_total{code=\"499\"} = %v, want 1", got)
	}
	if got := requestsWithCode(t, reg, "503"); got != 0 {
		t.Errorf("scalestack_app_requests_total{code=\"503\"} = %v, want 0", got)
	}
}

// requestsWithCode sums scalestack_app_requests_total over the routes for
// one status code.
func requestsWithCode(tb testing.TB, reg *prometheus.Registry, code string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "scalestack_app_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// waitAfterCommit is a store whose next transaction, once armed, commits
// and then holds its caller until the caller's context ends: the write is
// saved, and the user stops waiting before the answer.
type waitAfterCommit struct {
	store.Store
	mu        sync.Mutex
	armed     bool
	committed chan struct{}
}

func (s *waitAfterCommit) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := s.Store.Txn(ctx, ops...)
	s.mu.Lock()
	hold := s.armed && err == nil
	s.armed = s.armed && !hold
	s.mu.Unlock()
	if hold {
		s.committed <- struct{}{}
		<-ctx.Done()
	}
	return lsn, err
}

// The inline jobs of a saved write (the post's search indexing, its
// followers' notifications) run even when the author stopped waiting:
// they used to end with the request, failing as "context canceled" and
// leaving a saved post out of the index.
func TestJobsOfASavedWriteRunAfterTheClientGaveUp(t *testing.T) {
	st := &waitAfterCommit{Store: apptest.NewMemStore(), committed: make(chan struct{}, 1)}
	s := newStackOn(t, st)
	c := s.client(t)
	c.signup("writer")
	before := s.App.Status().(app.Status)

	st.mu.Lock()
	st.armed = true
	st.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	body := strings.NewReader(`{"title":"Saved anyway","body":"The author closed the tab.","published":true}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Server.URL+"/api/v1/posts", body)
	req.Header.Set("Content-Type", "application/json")
	errc := make(chan error, 1)
	go func() {
		resp, err := c.http.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-st.committed
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the request answered although its client gave up")
	}
	testwait.Until(t, 5*time.Second, "the post's jobs run or fail", func() bool {
		got := s.App.Status().(app.Status)
		return got.JobsDone > before.JobsDone || got.JobsError > before.JobsError
	})
	if got := s.App.Status().(app.Status); got.JobsError != before.JobsError || got.JobsDone == before.JobsDone {
		t.Errorf("jobs done %d -> %d, failed %d -> %d: want the saved post's jobs done although its author left",
			before.JobsDone, got.JobsDone, before.JobsError, got.JobsError)
	}
}
