package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The methods of a small test service, declared once for both sides as a
// real service would.
type echoReq struct {
	Text string `json:"text"`
}

type echoResp struct {
	Text     string `json:"text"`
	Instance string `json:"instance"`
}

var (
	echo  = rpc.Method[echoReq, echoResp]{Name: "echo", Idempotent: true}
	write = rpc.Method[echoReq, echoResp]{Name: "write"} // not idempotent
)

const service = "test"

// instance is one running instance of the test service.
type instance struct {
	rpc.Instance
	srv   *httptest.Server
	calls atomic.Int64 // calls its handlers received
}

// quiet is a logger for tests: the breakers' lines are expected.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startInstance serves the test service on a loopback port; fn, when not
// nil, answers both methods instead of the echo.
func startInstance(tb testing.TB, name string, fn func(ctx context.Context, req echoReq) (echoResp, error)) *instance {
	tb.Helper()
	in := &instance{}
	s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Instance: name, Logger: quiet(), MaxBodyBytes: 1 << 10})
	if err != nil {
		tb.Fatal(err)
	}
	h := func(ctx context.Context, req echoReq) (echoResp, error) {
		in.calls.Add(1)
		if fn != nil {
			return fn(ctx, req)
		}
		return echoResp{Text: req.Text, Instance: name}, nil
	}
	rpc.Handle(s, echo, h)
	rpc.Handle(s, write, h)
	in.srv = httptest.NewServer(s)
	tb.Cleanup(in.srv.Close)
	in.Instance = rpc.Instance{Name: name, Addr: in.srv.Listener.Addr().String()}
	return in
}

// restart serves in again on the address it had, after in.srv.Close.
func (in *instance) restart(tb testing.TB, h http.Handler) {
	tb.Helper()
	ln, err := net.Listen("tcp", in.Addr)
	if err != nil {
		tb.Fatalf("listen again on %s: %v", in.Addr, err)
	}
	in.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: h}}
	in.srv.Start()
	tb.Cleanup(in.srv.Close)
}

func newClient(tb testing.TB, cfg rpc.Config, ins ...*instance) *rpc.Client {
	tb.Helper()
	cfg.Service = service
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	if cfg.Instances == nil {
		list := make([]rpc.Instance, len(ins))
		for i, in := range ins {
			list[i] = in.Instance
		}
		cfg.Instances = func() []rpc.Instance { return list }
	}
	c, err := rpc.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// fakeClock is the breakers' clock in tests that pass a cooldown.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func statusOf(c *rpc.Client, name string) rpc.InstanceStatus {
	for _, is := range c.Status().Instances {
		if is.Name == name {
			return is
		}
	}
	return rpc.InstanceStatus{}
}

func TestRoundRobinSpreadsCalls(t *testing.T) {
	a, b, c := startInstance(t, "a", nil), startInstance(t, "b", nil), startInstance(t, "c", nil)
	cl := newClient(t, rpc.Config{}, a, b, c)
	for i := range 30 {
		got, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: fmt.Sprint(i)})
		if err != nil || got.Text != fmt.Sprint(i) {
			t.Fatalf("Call(echo %d) = %+v, %v", i, got, err)
		}
	}
	for _, in := range []*instance{a, b, c} {
		if n := in.calls.Load(); n != 10 {
			t.Errorf("instance %s served %d of 30 calls, want 10", in.Name, n)
		}
	}
	st := cl.Status()
	if st.Calls != 30 || st.Retries != 0 || st.Failed != 0 {
		t.Errorf("Status() = %+v, want 30 calls, no retry, no failure", st)
	}
}

// A killed instance: idempotent calls that reach it go on to the live one,
// its breaker opens and round robin passes it over, and after the cooldown
// one trial call finds it back.
func TestDeadInstanceIsHeldOffThenTriedAgain(t *testing.T) {
	live, dead := startInstance(t, "live", nil), startInstance(t, "dead", nil)
	dead.srv.Close()
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	cl := newClient(t, rpc.Config{Now: clock.Now, Breaker: rpc.BreakerConfig{Failures: 3, Cooldown: 10 * time.Second}}, dead, live)

	for i := range 20 {
		got, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "hi"})
		if err != nil || got.Instance != "live" {
			t.Fatalf("call %d = %+v, %v; want an answer from live", i, got, err)
		}
	}
	st := statusOf(cl, "dead")
	if st.State != rpc.Open || st.Calls != 3 || st.Failures != 3 || !strings.Contains(st.LastError, "refused") || st.RetryIn == "" {
		t.Fatalf("dead's status after 20 calls = %+v, want open after exactly 3 refused tries, with a retry_in", st)
	}
	if ls := statusOf(cl, "live"); ls.State != rpc.Closed || ls.Calls != 20 {
		t.Fatalf("live's status = %+v, want closed with 20 calls", ls)
	}

	// The cooldown passes; the instance is still down: one trial, and
	// the breaker opens again.
	clock.Add(10 * time.Second)
	for range 4 {
		if _, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "hi"}); err != nil {
			t.Fatalf("call during the trial: %v", err)
		}
	}
	if st := statusOf(cl, "dead"); st.State != rpc.Open || st.Calls != 4 {
		t.Fatalf("dead after a failed trial = %+v, want open again after one more try (4)", st)
	}

	// It comes back; after the (doubled) cooldown its trial succeeds and
	// it takes its share again.
	s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Instance: "dead", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var back atomic.Int64
	rpc.Handle(s, echo, func(ctx context.Context, req echoReq) (echoResp, error) {
		back.Add(1)
		return echoResp{Text: req.Text, Instance: "dead"}, nil
	})
	dead.restart(t, s)
	clock.Add(20 * time.Second)
	testwait.Until(t, 5*time.Second, "the restarted instance to serve a call", func() bool {
		_, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "hi"})
		return err == nil && back.Load() > 0
	})
	if st := statusOf(cl, "dead"); st.State != rpc.Closed || st.ConsecutiveFailures != 0 {
		t.Fatalf("restarted instance's status = %+v, want closed", st)
	}
	before := back.Load()
	for range 10 {
		if _, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := back.Load() - before; n != 5 {
		t.Fatalf("the restarted instance served %d of 10 calls, want 5", n)
	}
}

// A call that nothing of reached the server may go elsewhere even when it
// is not idempotent: the connection was refused.
func TestRefusedCallGoesElsewhere(t *testing.T) {
	live, dead := startInstance(t, "live", nil), startInstance(t, "dead", nil)
	dead.srv.Close()
	cl := newClient(t, rpc.Config{}, dead, live)
	for _, m := range []rpc.Method[echoReq, echoResp]{echo, write} {
		for i := range 4 {
			got, err := rpc.Call(context.Background(), cl, m, echoReq{Text: "x"})
			if err != nil || got.Instance != "live" {
				t.Fatalf("%s call %d = %+v, %v; want an answer from live", m.Name, i, got, err)
			}
		}
	}
	if st := cl.Status(); st.Retries != 4 {
		t.Fatalf("Status().Retries = %d, want 4 (every other call met the dead instance first)", st.Retries)
	}
}

// A call that is not idempotent and may have reached the server is never
// sent again: the second instance sees nothing, and the caller learns
// that the outcome is unknown.
func TestUnsafeCallThatTimesOutIsNotRetried(t *testing.T) {
	var total atomic.Int64
	hang := func(ctx context.Context, req echoReq) (echoResp, error) {
		total.Add(1)
		<-ctx.Done()
		return echoResp{}, ctx.Err()
	}
	a, b := startInstance(t, "a", hang), startInstance(t, "b", hang)
	cl := newClient(t, rpc.Config{Timeout: 200 * time.Millisecond}, a, b)

	_, err := rpc.Call(context.Background(), cl, write, echoReq{Text: "charge"})
	if !errors.Is(err, rpc.ErrOutcomeUnknown) {
		t.Fatalf("Call(write) on hanging instances = %v, want ErrOutcomeUnknown", err)
	}
	if n := total.Load(); n != 1 {
		t.Fatalf("the instances received %d calls, want exactly 1", n)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call(write) = %v, want it to say that the deadline passed", err)
	}

	// The same call with an idempotency key is safe to send again.
	total.Store(0)
	ctx := rpc.WithIdempotencyKey(context.Background(), "charge-1")
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = rpc.Call(ctx, cl, write, echoReq{Text: "charge"})
	if errors.Is(err, rpc.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("keyed Call(write) = %v, want a plain deadline error", err)
	}
}

// A 503 (the service's store failing over) is retried on another instance
// only for a call that is safe to repeat.
func TestUnavailableIsRetriedOnlyWhenSafe(t *testing.T) {
	down := startInstance(t, "down", func(ctx context.Context, req echoReq) (echoResp, error) {
		return echoResp{}, fmt.Errorf("read post: %w", store.ErrUnavailable)
	})
	up := startInstance(t, "up", nil)
	cl := newClient(t, rpc.Config{}, down, up)

	got, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "x"})
	if err != nil || got.Instance != "up" {
		t.Fatalf("Call(echo) = %+v, %v; want an answer from up after down's 503", got, err)
	}
	_, err = rpc.Call(context.Background(), cl, write, echoReq{Text: "x"}) // round robin: up
	if err != nil {
		t.Fatal(err)
	}
	_, err = rpc.Call(context.Background(), cl, write, echoReq{Text: "x"}) // down
	if !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("Call(write) on down = %v, want ErrUnavailable, not retried", err)
	}
	if n := down.calls.Load() + up.calls.Load(); n != 4 {
		t.Fatalf("the instances received %d calls, want 4 (2 tries of echo, 2 writes)", n)
	}
	ctx := rpc.WithIdempotencyKey(context.Background(), "k")
	_, _ = rpc.Call(ctx, cl, write, echoReq{Text: "x"}) // up
	if got, err := rpc.Call(ctx, cl, write, echoReq{Text: "x"}); err != nil || got.Instance != "up" {
		t.Fatalf("keyed Call(write) = %+v, %v; want up's answer after down's 503", got, err)
	}
	// The instance answered each time: a dependency's outage does not open
	// its breaker (every instance shares the store group).
	if st := statusOf(cl, "down"); st.State != rpc.Closed || st.Failures != 0 {
		t.Fatalf("down's status = %+v, want closed with no failure counted", st)
	}
}

func TestEveryInstanceOpenFailsFast(t *testing.T) {
	a, b := startInstance(t, "a", nil), startInstance(t, "b", nil)
	a.srv.Close()
	b.srv.Close()
	cl := newClient(t, rpc.Config{Breaker: rpc.BreakerConfig{Failures: 1, Cooldown: time.Hour}}, a, b)
	if _, err := rpc.Call(context.Background(), cl, echo, echoReq{}); !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("first call = %v, want ErrUnavailable", err)
	}
	_, err := rpc.Call(context.Background(), cl, echo, echoReq{})
	if !errors.Is(err, rpc.ErrUnavailable) || !strings.Contains(err.Error(), "service test: every instance (2) is failing") {
		t.Fatalf("call with every breaker open = %v, want ErrUnavailable naming the service", err)
	}
	for _, is := range cl.Status().Instances {
		if is.Calls != 1 {
			t.Fatalf("%s received %d tries, want 1: an open breaker sends nothing", is.Name, is.Calls)
		}
	}

	none := newClient(t, rpc.Config{Instances: func() []rpc.Instance { return nil }})
	if _, err := rpc.Call(context.Background(), none, echo, echoReq{}); !errors.Is(err, rpc.ErrUnavailable) || !strings.Contains(err.Error(), "no instance") {
		t.Fatalf("call with no instance = %v, want ErrUnavailable saying there is none", err)
	}
}

// errPanic makes the test handler panic.
var errPanic = errors.New("panic")

// Every error a service returns arrives on the caller's side as the same
// error, as when the service runs in-process.
func TestErrorsSurviveTheHop(t *testing.T) {
	tests := []struct {
		err    error
		want   error // errors.Is
		status int
		field  string
	}{
		{fmt.Errorf("post 7: %w", svc.ErrNotFound), svc.ErrNotFound, 404, ""},
		{svc.ErrExists, svc.ErrExists, 409, ""},
		{fmt.Errorf("update: %w", svc.ErrConflict), svc.ErrConflict, 409, ""},
		{svc.ErrBadCredentials, svc.ErrBadCredentials, 401, ""},
		{svc.ErrForbidden, svc.ErrForbidden, 403, ""},
		{svc.ErrTooLarge, svc.ErrTooLarge, 413, ""},
		{svc.ErrUnsupported, svc.ErrUnsupported, 415, ""},
		{svc.Invalid("title", "must not be empty"), nil, 400, "title"},
		{&svc.FieldError{Field: "handle", Msg: "is taken", Err: svc.ErrExists}, svc.ErrExists, 409, "handle"},
		{&svc.FieldError{Field: "image", Msg: "must be at most 5 MB", Err: svc.ErrTooLarge}, svc.ErrTooLarge, 413, "image"},
		{fmt.Errorf("scan: %w", store.ErrUnavailable), rpc.ErrUnavailable, 503, ""},
		{store.ErrNotPrimary, rpc.ErrUnavailable, 503, ""},
		{fmt.Errorf("create post: %w", store.ErrSyncTimeout), rpc.ErrOutcomeUnknown, 500, ""},
		{fmt.Errorf("put image: %w", store.ErrTooLarge), svc.ErrTooLarge, 413, ""},
		{context.DeadlineExceeded, context.DeadlineExceeded, 504, ""},
		{errors.New("nil map in handler"), rpc.ErrInternal, 500, ""},
		{errPanic, rpc.ErrInternal, 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			in := startInstance(t, "one", func(ctx context.Context, req echoReq) (echoResp, error) {
				if tt.err == errPanic {
					var m map[string]int
					m["nil map in handler"]++ // a bug: the handler panics
				}
				return echoResp{}, tt.err
			})
			cl := newClient(t, rpc.Config{Retries: -1}, in)
			_, err := rpc.Call(context.Background(), cl, echo, echoReq{})
			var re *rpc.Error
			if !errors.As(err, &re) || re.Status != tt.status || re.Instance != "one" {
				t.Fatalf("Call = %v (%#v), want an *rpc.Error with status %d from one", err, re, tt.status)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Call = %v, want errors.Is(err, %v)", err, tt.want)
			}
			var fe *svc.FieldError
			if tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field || fe.Msg != tt.err.(*svc.FieldError).Msg) {
				t.Fatalf("Call = %v, want a *svc.FieldError on %s with the service's message", err, tt.field)
			}
			if tt.field == "" && errors.As(err, &fe) {
				t.Fatalf("Call = %v, a FieldError the service did not return", err)
			}
			if tt.status == 500 && strings.Contains(err.Error(), "nil map") {
				t.Fatalf("Call = %v: an internal error's text crossed the wire", err)
			}
		})
	}
}

func TestServerSeesTheCallersDeadline(t *testing.T) {
	got := make(chan time.Time, 1)
	in := startInstance(t, "one", func(ctx context.Context, req echoReq) (echoResp, error) {
		dl, _ := ctx.Deadline()
		got <- dl
		return echoResp{}, nil
	})
	cl := newClient(t, rpc.Config{Timeout: 3 * time.Second}, in)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if _, err := rpc.Call(ctx, cl, echo, echoReq{}); err != nil {
		t.Fatal(err)
	}
	// The time left, counted again on arrival: the caller's deadline plus
	// the time in transit, not the server's default (30s).
	if dl := <-got; dl.After(want.Add(2*time.Second)) || dl.Before(want.Add(-2*time.Second)) {
		t.Fatalf("the handler's deadline is %v, want the caller's %v", dl, want)
	}

	// Without a deadline, the client's Timeout is the call's.
	start := time.Now()
	if _, err := rpc.Call(context.Background(), cl, echo, echoReq{}); err != nil {
		t.Fatal(err)
	}
	if dl := <-got; dl.After(time.Now().Add(3*time.Second)) || dl.Before(start.Add(time.Second)) {
		t.Fatalf("the handler's deadline is %v after the call began, want Timeout (3s) or a little less", dl.Sub(start))
	}
}

func TestTraceparentAndKeyTravel(t *testing.T) {
	type seen struct {
		span tracectx.SpanContext
		key  string
	}
	got := make(chan seen, 1)
	in := startInstance(t, "one", func(ctx context.Context, req echoReq) (echoResp, error) {
		sc, _ := tracectx.FromContext(ctx)
		got <- seen{sc, rpc.IdempotencyKey(ctx)}
		return echoResp{}, nil
	})
	cl := newClient(t, rpc.Config{}, in)
	caller, err := tracectx.Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err != nil {
		t.Fatal(err)
	}
	ctx := rpc.WithIdempotencyKey(tracectx.NewContext(context.Background(), caller), "tip-42")
	if _, err := rpc.Call(ctx, cl, write, echoReq{}); err != nil {
		t.Fatal(err)
	}
	// The handler runs in a span of its own, a child of the caller's: the
	// same trace, another span id.
	s := <-got
	if s.span.TraceID != caller.TraceID || s.span.SpanID == caller.SpanID || !s.span.SpanID.IsValid() || s.key != "tip-42" {
		t.Fatalf("the handler saw span %v and key %q, want a child of %v and tip-42", s.span, s.key, caller)
	}
	// A handler that calls another service with its context sends the
	// trace on, and not the key, which named its own call's effect; the
	// gateway's trail names both instances.
	outer := startInstance(t, "outer", func(ctx context.Context, req echoReq) (echoResp, error) {
		return rpc.Call(ctx, cl, write, req)
	})
	tctx, trail := rpc.WithTrail(ctx)
	if _, err := rpc.Call(tctx, newClient(t, rpc.Config{}, outer), write, echoReq{}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.span.TraceID != caller.TraceID || s.key != "" {
		t.Fatalf("two hops away the handler saw span %v and key %q, want trace %v and no key", s.span, s.key, caller.TraceID)
	}
	if got := trail.String(); got != "outer, one" {
		t.Fatalf("the trail after a call through outer to one = %q, want %q", got, "outer, one")
	}

	// A call made without a trace carries none.
	if _, err := rpc.Call(context.Background(), cl, echo, echoReq{}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != (seen{}) {
		t.Fatalf("the handler saw %+v, want no span and no key", s)
	}
}

// What curl or a broken caller sends gets a clear 4xx in the wire's JSON.
func TestServerRefusesBadCalls(t *testing.T) {
	s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Token: "secret", MaxBodyBytes: 64, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rpc.Handle(s, echo, func(ctx context.Context, req echoReq) (echoResp, error) { return echoResp{Text: req.Text}, nil })
	srv := httptest.NewServer(s)
	defer srv.Close()

	tests := []struct {
		name, method, path, ctype, body string
		header                          map[string]string
		noToken                         bool
		status                          int
		code, msg                       string
	}{
		{name: "ok", path: "/v1/test/echo", body: `{"text":"hi"}`, status: 200},
		{name: "unknown members are ignored", path: "/v1/test/echo", body: `{"text":"hi","new":1}`, status: 200},
		{name: "malformed JSON", path: "/v1/test/echo", body: `{"text":`, status: 400, code: "bad_request", msg: "malformed JSON"},
		{name: "wrong type", path: "/v1/test/echo", body: `{"text":5}`, status: 400, code: "bad_request", msg: "malformed JSON"},
		{name: "two values", path: "/v1/test/echo", body: `{} {}`, status: 400, code: "bad_request", msg: "data after"},
		{name: "empty body", path: "/v1/test/echo", body: ``, status: 400, code: "bad_request", msg: "{} for none"},
		{name: "oversized", path: "/v1/test/echo", body: `{"text":"` + strings.Repeat("x", 100) + `"}`, status: 413, code: "too_large", msg: "limit of 64 bytes"},
		{name: "GET", method: "GET", path: "/v1/test/echo", status: 405, code: "bad_request", msg: "a call is a POST"},
		{name: "unknown method", path: "/v1/test/nope", body: `{}`, status: 404, code: "unknown_method", msg: "service test"},
		{name: "other service", path: "/v1/users/echo", body: `{}`, status: 404, code: "unknown_method"},
		{name: "not JSON", path: "/v1/test/echo", ctype: "text/plain", body: `{}`, status: 415, code: "bad_request", msg: "application/json"},
		{name: "bad timeout", path: "/v1/test/echo", body: `{}`, header: map[string]string{rpc.HeaderTimeout: "soon"}, status: 400, code: "bad_request", msg: "X-Timeout-Ms"},
		{name: "no token", path: "/v1/test/echo", body: `{}`, noToken: true, status: 401, code: "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			if !tt.noToken {
				req.Header.Set("Authorization", "Bearer secret")
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", method, tt.path, resp.StatusCode, body, tt.status)
			}
			if tt.code == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			if !strings.Contains(string(body), `"code":"`+tt.code+`"`) || !strings.Contains(string(body), tt.msg) {
				t.Fatalf("body %s, want code %s and a message with %q", body, tt.code, tt.msg)
			}
		})
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct {
		cfg  rpc.Config
		want string
	}{
		{rpc.Config{Instances: func() []rpc.Instance { return nil }}, "Config.Service"},
		{rpc.Config{Service: "Bad Name", Instances: func() []rpc.Instance { return nil }}, "Config.Service"},
		{rpc.Config{Service: "users"}, "Config.Instances"},
		{rpc.Config{Service: "users", Instances: func() []rpc.Instance { return nil }, Retries: -2}, "Config.Retries of the users client is negative"},
		{rpc.Config{Service: "users", Instances: func() []rpc.Instance { return nil }, Breaker: rpc.BreakerConfig{Cooldown: -1}}, "Config.Breaker.Cooldown"},
	} {
		if _, err := rpc.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
	if _, err := rpc.NewServer(rpc.ServerConfig{}); err == nil || !strings.Contains(err.Error(), "ServerConfig.Service") {
		t.Errorf("NewServer without a service = %v, want an error naming ServerConfig.Service", err)
	}
}

// An instance that dies mid-call (the connection drops after the request
// reached it): an idempotent call goes on to the next instance, a call
// that is not comes back as outcome unknown, sent once.
func TestConnectionLostMidCall(t *testing.T) {
	var dropped atomic.Int64
	drop := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		dropped.Add(1)
		panic(http.ErrAbortHandler) // net/http closes the connection without an answer
	}))
	t.Cleanup(drop.Close)
	live := startInstance(t, "live", nil)
	dropper := &instance{Instance: rpc.Instance{Name: "drop", Addr: drop.Listener.Addr().String()}}
	cl := newClient(t, rpc.Config{}, dropper, live)

	got, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "x"})
	if err != nil || got.Instance != "live" {
		t.Fatalf("Call(echo) = %+v, %v; want live's answer after the dropped connection", got, err)
	}
	_, _ = rpc.Call(context.Background(), cl, write, echoReq{}) // live's turn
	before := dropped.Load()
	_, err = rpc.Call(context.Background(), cl, write, echoReq{Text: "x"})
	if !errors.Is(err, rpc.ErrOutcomeUnknown) {
		t.Fatalf("Call(write) with the connection dropped = %v, want ErrOutcomeUnknown", err)
	}
	if n := dropped.Load() - before; n != 1 || live.calls.Load() != 2 {
		t.Fatalf("the write reached drop %d times and live %d calls in all, want 1 and 2", n, live.calls.Load())
	}
}

// Many callers at once while an instance dies: every idempotent call
// succeeds, and the counts agree (each try is counted once, on the
// instance it went to).
func TestConcurrentCallsWhileAnInstanceDies(t *testing.T) {
	a, b, c := startInstance(t, "a", nil), startInstance(t, "b", nil), startInstance(t, "c", nil)
	cl := newClient(t, rpc.Config{Breaker: rpc.BreakerConfig{Failures: 2, Cooldown: time.Hour}}, a, b, c)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if g == 0 && i == 10 {
					b.srv.Close()
				}
				if _, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "x"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call failed while b died: %v", err)
	}
	st := cl.Status()
	var tries uint64
	for _, is := range st.Instances {
		tries += is.Calls
	}
	if st.Calls != 400 || tries != st.Calls+st.Retries {
		t.Fatalf("Status() = %+v: %d tries on the instances, want 400 calls and tries = calls + retries", st, tries)
	}
	if bs := statusOf(cl, "b"); bs.State != rpc.Open {
		t.Fatalf("b's status = %+v, want open", bs)
	}
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"name":"b","addr":"`+b.Addr+`","state":"open","consecutive_failures":`) {
		t.Fatalf("Status() as JSON = %s, %v; want b open", js, err)
	}
}

// The instances come from membership on every call: one that joins takes
// its share at once, one that leaves (or drains) gets nothing more and
// leaves /status, and if its name comes back it starts with a closed
// breaker.
func TestInstancesFollowMembership(t *testing.T) {
	a, b := startInstance(t, "a", nil), startInstance(t, "b", nil)
	var mu sync.Mutex
	list := []rpc.Instance{a.Instance}
	cl := newClient(t, rpc.Config{Breaker: rpc.BreakerConfig{Failures: 1, Cooldown: time.Hour}, Instances: func() []rpc.Instance {
		mu.Lock()
		defer mu.Unlock()
		return list
	}})
	set := func(ins ...rpc.Instance) {
		mu.Lock()
		list = ins
		mu.Unlock()
	}
	calls := func(n int) {
		t.Helper()
		for range n {
			if _, err := rpc.Call(context.Background(), cl, echo, echoReq{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	calls(2)
	set(a.Instance, b.Instance)
	calls(4)
	if b.calls.Load() != 2 {
		t.Fatalf("b served %d of 4 calls after joining, want 2", b.calls.Load())
	}

	// b is killed: its breaker opens; it leaves membership and /status.
	b.srv.Close()
	calls(4)
	if st := statusOf(cl, "b"); st.State != rpc.Open {
		t.Fatalf("b after its death = %+v, want open", st)
	}
	set(a.Instance)
	if st := cl.Status(); len(st.Instances) != 1 || st.Instances[0].Name != "a" {
		t.Fatalf("Status().Instances = %+v, want a alone", st.Instances)
	}

	// b comes back under its name, at a new address: a fresh breaker.
	b2 := startInstance(t, "b", nil)
	set(a.Instance, b2.Instance)
	calls(4)
	if st := statusOf(cl, "b"); st.State != rpc.Closed || st.Failures != 0 || b2.calls.Load() != 2 {
		t.Fatalf("b back = %+v having served %d calls, want closed, no failure, 2 of 4 calls", st, b2.calls.Load())
	}

	// Killed again and restarted at another address before membership
	// noticed it gone: the new process is not held off for the old one.
	b2.srv.Close()
	calls(2)
	if st := statusOf(cl, "b"); st.State != rpc.Open {
		t.Fatalf("b after its second death = %+v, want open", st)
	}
	b3 := startInstance(t, "b", nil)
	set(a.Instance, b3.Instance)
	calls(4)
	if st := statusOf(cl, "b"); st.State != rpc.Closed || b3.calls.Load() != 2 {
		t.Fatalf("b at a new address = %+v having served %d calls, want closed and 2 of 4 calls", st, b3.calls.Load())
	}
}

// A service's own errors travel as the table's do, when both sides are
// given its codes.
func TestServiceCodes(t *testing.T) {
	errDeclined := errors.New("card declined")
	errKeyReused := fmt.Errorf("idempotency key used for another payment: %w", svc.ErrConflict)
	codes := []rpc.Code{
		{Name: "declined", Status: http.StatusPaymentRequired, Err: errDeclined},
		{Name: "key_reused", Status: http.StatusConflict, Err: errKeyReused},
	}
	s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Codes: codes, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rpc.Handle(s, write, func(ctx context.Context, req echoReq) (echoResp, error) {
		switch req.Text {
		case "declined":
			return echoResp{}, fmt.Errorf("charge 4000000000000002: %w", errDeclined)
		case "reused":
			return echoResp{}, errKeyReused
		}
		return echoResp{}, svc.ErrConflict
	})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cl := newClient(t, rpc.Config{Codes: codes, Instances: func() []rpc.Instance { return []rpc.Instance{{Name: "one", Addr: srv.Listener.Addr().String()}} }})

	for _, tt := range []struct {
		text   string
		want   []error // errors.Is each
		not    error   // !errors.Is
		status int
	}{
		{"declined", []error{errDeclined}, svc.ErrConflict, 402},
		{"reused", []error{errKeyReused, svc.ErrConflict}, nil, 409}, // the service's code, which wraps svc's
		{"other", []error{svc.ErrConflict}, errKeyReused, 409},
	} {
		_, err := rpc.Call(context.Background(), cl, write, echoReq{Text: tt.text})
		var re *rpc.Error
		if !errors.As(err, &re) || re.Status != tt.status {
			t.Fatalf("Call(%s) = %v, want an *rpc.Error under %d", tt.text, err, tt.status)
		}
		for _, w := range tt.want {
			if !errors.Is(err, w) {
				t.Errorf("Call(%s) = %v, want it to match %v", tt.text, err, w)
			}
		}
		if tt.not != nil && errors.Is(err, tt.not) {
			t.Errorf("Call(%s) = %v, which should not match %v", tt.text, err, tt.not)
		}
	}

	for _, bad := range [][]rpc.Code{
		{{Name: "not_found", Status: 404, Err: errDeclined}},
		{{Name: "declined", Status: 200, Err: errDeclined}},
		{{Name: "declined", Status: 402}},
		{{Name: "Declined", Status: 402, Err: errDeclined}},
		{codes[0], codes[0]},
	} {
		if _, err := rpc.NewServer(rpc.ServerConfig{Service: service, Codes: bad}); err == nil || !strings.Contains(err.Error(), "ServerConfig.Codes[") {
			t.Errorf("NewServer with codes %+v = %v, want an error naming ServerConfig.Codes", bad, err)
		}
	}
}

// When every instance answers 503 (their store group is down, so no
// breaker opens), the retry budget keeps the service's load near the
// gateway's: retries are at most 20 % of the calls.
func TestRetryBudgetBoundsRetries(t *testing.T) {
	down := func(ctx context.Context, req echoReq) (echoResp, error) { return echoResp{}, store.ErrUnavailable }
	a, b, c := startInstance(t, "a", down), startInstance(t, "b", down), startInstance(t, "c", down)
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	tries := func(cl *rpc.Client) uint64 {
		var n uint64
		for _, is := range cl.Status().Instances {
			n += is.Calls
		}
		return n
	}

	budgeted := newClient(t, rpc.Config{Now: clock.Now, RetryMinPerSecond: -1}, a, b, c)
	for range 20 {
		if _, err := rpc.Call(context.Background(), budgeted, echo, echoReq{}); !errors.Is(err, rpc.ErrUnavailable) {
			t.Fatalf("Call = %v, want ErrUnavailable", err)
		}
	}
	if st := budgeted.Status(); st.Retries != 4 || st.RetriesDenied != 20 || tries(budgeted) != 24 {
		t.Fatalf("with the budget: %d retries, %d denied, %d tries; want 4 (20 %% of 20 calls), 20, 24", st.Retries, st.RetriesDenied, tries(budgeted))
	}

	unbounded := newClient(t, rpc.Config{Now: clock.Now, RetryBudget: -1, RetryMinPerSecond: -1}, a, b, c)
	for range 20 {
		_, _ = rpc.Call(context.Background(), unbounded, echo, echoReq{})
	}
	if st := unbounded.Status(); st.Retries != 40 || st.RetriesDenied != 0 {
		t.Fatalf("without a budget: %d retries, %d denied; want 40 (2 per call), 0", st.Retries, st.RetriesDenied)
	}
}

// An instance that takes calls and never answers (a paused process) costs
// a safe call one TryTimeout, after which the call goes elsewhere; an
// unsafe call is still not sent twice.
func TestTryTimeoutMovesOnFromASilentInstance(t *testing.T) {
	var hung atomic.Int64
	silent := startInstance(t, "silent", func(ctx context.Context, req echoReq) (echoResp, error) {
		hung.Add(1)
		<-ctx.Done()
		return echoResp{}, ctx.Err()
	})
	live := startInstance(t, "live", nil)
	cl := newClient(t, rpc.Config{Timeout: time.Minute, TryTimeout: 100 * time.Millisecond}, silent, live)

	got, err := rpc.Call(context.Background(), cl, echo, echoReq{Text: "x"})
	if err != nil || got.Instance != "live" || hung.Load() != 1 {
		t.Fatalf("Call(echo) = %+v, %v after %d tries at silent; want live's answer after one", got, err, hung.Load())
	}
	_, _ = rpc.Call(context.Background(), cl, write, echoReq{}) // live's turn
	_, err = rpc.Call(context.Background(), cl, write, echoReq{Text: "x"})
	if !errors.Is(err, rpc.ErrOutcomeUnknown) || hung.Load() != 2 || live.calls.Load() != 2 {
		t.Fatalf("Call(write) = %v with %d tries at silent and %d calls at live; want outcome unknown, 2 and 2", err, hung.Load(), live.calls.Load())
	}
}

// A method whose arguments carry their key (Method.Key) is sent with it as
// Idempotency-Key and retried like an idempotent call; a key in the
// context wins. A service's own 503 code (payments' outcome unknown) is
// its dependency's answer: retried when safe, no failure of the instance.
func TestKeyedMethodAndOwnUnavailable(t *testing.T) {
	errPending := errors.New("payment outcome unknown")
	codes := []rpc.Code{{Name: "pending", Status: http.StatusServiceUnavailable, Err: errPending}}
	charge := rpc.Method[echoReq, echoResp]{Name: "charge", Key: func(r echoReq) string { return r.Text }}
	var keys []string
	var mu sync.Mutex
	serve := func(name string, fail bool) *instance {
		s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Instance: name, Codes: codes, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		rpc.Handle(s, charge, func(ctx context.Context, req echoReq) (echoResp, error) {
			mu.Lock()
			keys = append(keys, name+":"+rpc.IdempotencyKey(ctx))
			mu.Unlock()
			if fail {
				return echoResp{}, fmt.Errorf("charge: %w", errPending)
			}
			return echoResp{Text: req.Text, Instance: name}, nil
		})
		in := &instance{srv: httptest.NewServer(s)}
		t.Cleanup(in.srv.Close)
		in.Instance = rpc.Instance{Name: name, Addr: in.srv.Listener.Addr().String()}
		return in
	}
	slow, ok := serve("slow", true), serve("ok", false)
	cl := newClient(t, rpc.Config{Codes: codes}, slow, ok)

	got, err := rpc.Call(context.Background(), cl, charge, echoReq{Text: "k-1"})
	if err != nil || got.Instance != "ok" {
		t.Fatalf("Call(charge) = %+v, %v; want ok's answer after slow's 503", got, err)
	}
	_, _ = rpc.Call(rpc.WithIdempotencyKey(context.Background(), "ctx-key"), cl, charge, echoReq{Text: "k-2"})
	mu.Lock()
	seen := slices.Clone(keys)
	mu.Unlock()
	if want := []string{"slow:k-1", "ok:k-1", "ok:ctx-key"}; !slices.Equal(seen, want) {
		t.Fatalf("keys the instances saw = %v, want %v", seen, want)
	}
	if st := statusOf(cl, "slow"); st.State != rpc.Closed || st.Failures != 0 {
		t.Fatalf("slow's status = %+v, want closed with no failure counted", st)
	}
	// Without a key the same method is not safe: the 503 is returned.
	_, err = rpc.Call(context.Background(), cl, charge, echoReq{}) // slow
	if !errors.Is(err, errPending) {
		t.Fatalf("Call(charge) without a key = %v, want the pending error, not retried", err)
	}
}
