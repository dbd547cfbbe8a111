package cdn_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn"
)

// origin is a test origin server that counts the requests it answers.
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// newEdge starts an edge in front of originURL on a free loopback port;
// edit, when not nil, adjusts the configuration and the dependencies first.
func newEdge(t testing.TB, originURL string, edit func(*cdn.Config, *cdn.Deps)) *cdn.Edge {
	t.Helper()
	cfg := cdn.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "edge-test"
	cfg.Origin = originURL
	cfg.DrainTimeout = 5 * time.Second
	var deps cdn.Deps
	if edit != nil {
		edit(&cfg, &deps)
	}
	e, err := cdn.New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := e.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// response is what a test reads of one response.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) cache() string { return r.header.Get("X-Cache") }

// do sends one request to the edge; kv are request header pairs.
func do(t testing.TB, e *cdn.Edge, method, path string, kv ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.Addr()+path, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	return send(t, req)
}

func send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func get(t testing.TB, e *cdn.Edge, path string, kv ...string) response {
	t.Helper()
	return do(t, e, http.MethodGet, path, kv...)
}

// wantCache fails unless r has the X-Cache value and body wanted.
func wantCache(t testing.TB, what string, r response, cache, body string) {
	t.Helper()
	if r.cache() != cache || (body != "" && r.body != body) {
		t.Fatalf("%s: X-Cache %q, body %q (status %d); want %q, %q", what, r.cache(), clip(r.body), r.status, cache, body)
	}
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// fakePurges stands in for the node's NATS connection.
type fakePurges struct {
	subject atomic.Value
	fn      atomic.Value // func([]byte)
	missed  atomic.Value // func()
	stopped atomic.Bool
}

func (f *fakePurges) Subscribe(subject string, fn func([]byte), missed func()) (func(), error) {
	f.subject.Store(subject)
	f.fn.Store(fn)
	f.missed.Store(missed)
	return func() { f.stopped.Store(true) }, nil
}

// miss tells the edge that purges may have been missed, as the node's NATS
// subscription does once it is live and after a reconnect.
func (f *fakePurges) miss(t testing.TB) {
	t.Helper()
	missed, ok := f.missed.Load().(func())
	if !ok {
		t.Fatal("the edge did not subscribe to purges")
	}
	missed()
}

func (f *fakePurges) publish(t testing.TB, msg string) {
	t.Helper()
	fn, ok := f.fn.Load().(func([]byte))
	if !ok {
		t.Fatal("the edge did not subscribe to purges")
	}
	fn([]byte(msg))
}

var _ = strings.Repeat
