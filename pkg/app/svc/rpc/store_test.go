package rpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// startGroup starts a real store primary of group and returns a client of
// it.
func startGroup(tb testing.TB, group, name string) *store.Client {
	tb.Helper()
	sc := server.DefaultConfig()
	sc.Addr, sc.NodeName, sc.DataDir, sc.Group = "127.0.0.1:0", name, tb.TempDir(), group
	ss, err := server.New(sc, server.Deps{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := ss.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ss.Close() })
	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: name, Addr: ss.Addr(), Primary: true, Group: group}},
		Group:    group,
		Timeout:  10 * time.Second,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// consistencyResp is what the test service saw of its caller's
// consistency.
type consistencyResp struct {
	Level string     `json:"level"`
	LSNs  store.LSNs `json:"lsns"`
	Value string     `json:"value"`
}

var (
	put  = rpc.Method[echoReq, consistencyResp]{Name: "put", Idempotent: true}
	get  = rpc.Method[echoReq, consistencyResp]{Name: "get", Idempotent: true}
	fail = rpc.Method[echoReq, consistencyResp]{Name: "fail", Idempotent: true}
)

// startStoreService serves put, get and fail over st on service name, as
// a service node would over its group.
func startStoreService(tb testing.TB, name string, st *store.Client, then func(ctx context.Context) error) rpc.Instance {
	tb.Helper()
	s, err := rpc.NewServer(rpc.ServerConfig{Service: name, Instance: name + "-1", Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	seen := func(ctx context.Context, value string) consistencyResp {
		level, lsns := store.ConsistencyLSNs(ctx)
		return consistencyResp{Level: level.String(), LSNs: lsns, Value: value}
	}
	rpc.Handle(s, put, func(ctx context.Context, req echoReq) (consistencyResp, error) {
		if _, err := st.Txn(ctx, store.Put("notes", "k", []byte(req.Text))); err != nil {
			return consistencyResp{}, err
		}
		if then != nil {
			if err := then(ctx); err != nil {
				return consistencyResp{}, err
			}
		}
		return seen(ctx, ""), nil
	})
	rpc.Handle(s, get, func(ctx context.Context, req echoReq) (consistencyResp, error) {
		v, err := st.Get(ctx, "notes", "k")
		if err != nil {
			return consistencyResp{}, err
		}
		return seen(ctx, string(v)), nil
	})
	rpc.Handle(s, fail, func(ctx context.Context, req echoReq) (consistencyResp, error) {
		if _, err := st.Txn(ctx, store.Put("notes", "k", []byte(req.Text))); err != nil {
			return consistencyResp{}, err
		}
		return consistencyResp{}, svc.ErrConflict
	})
	srv := httptest.NewServer(s)
	tb.Cleanup(srv.Close)
	return rpc.Instance{Name: name + "-1", Addr: srv.Listener.Addr().String()}
}

func storeClient(tb testing.TB, service string, in rpc.Instance) *rpc.Client {
	tb.Helper()
	c, err := rpc.New(rpc.Config{Service: service, Instances: func() []rpc.Instance { return []rpc.Instance{in} }, Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Read-your-writes across a hop: the LSN a service's write committed at
// comes back to the caller's store.Trace under the service's group, and
// the caller's session LSNs bound the service's reads.
func TestStoreLSNsTravel(t *testing.T) {
	st := startGroup(t, "users", "users-db-1")
	c := storeClient(t, "users", startStoreService(t, "users", st, nil))

	// No consistency in the caller's context: the handler's reads are
	// strong, as in-process.
	ctx := context.Background()
	var tr store.Trace
	got, err := rpc.Call(store.WithTrace(ctx, &tr), c, put, echoReq{Text: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Level != "strong" || len(got.LSNs) != 0 {
		t.Errorf("handler's consistency without headers = %s %v, want strong and no LSNs", got.Level, got.LSNs)
	}
	node, lsns := tr.Seen()
	if node != "users-db-1" || lsns.Get("users") == 0 || lsns.Get(store.DefaultGroup) != 0 {
		t.Fatalf("caller's trace after the write = %q %v, want users-db-1 and an LSN of group users alone", node, lsns)
	}

	// The caller's session LSNs reach the handler's context.
	sctx := store.WithConsistencyLSNs(ctx, store.Session, lsns.With(store.DefaultGroup, 7))
	got, err = rpc.Call(sctx, c, get, echoReq{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Level != "session" || got.LSNs.String() != lsns.With(store.DefaultGroup, 7).String() || got.Value != "one" {
		t.Errorf("handler saw %s %v (value %q), want session %v and the value written", got.Level, got.LSNs, got.Value, lsns.With(store.DefaultGroup, 7))
	}

	// A call that failed after its write still reports the write's LSN.
	var tr2 store.Trace
	if _, err := rpc.Call(store.WithTrace(ctx, &tr2), c, fail, echoReq{Text: "two"}); !errors.Is(err, svc.ErrConflict) {
		t.Fatalf("fail = %v, want svc.ErrConflict", err)
	}
	if _, l2 := tr2.Seen(); l2.Get("users") <= lsns.Get("users") {
		t.Errorf("trace after the failed call = %v, want users above %d", l2, lsns.Get("users"))
	}
}

// A service that calls another passes on the LSNs of both groups: the
// caller's trace covers every group the call touched.
func TestStoreLSNsAcrossTwoHops(t *testing.T) {
	users := startGroup(t, "users", "users-db-1")
	content := startGroup(t, "content", "content-db-1")
	uc := storeClient(t, "users", startStoreService(t, "users", users, nil))
	cc := storeClient(t, "content", startStoreService(t, "content", content, func(ctx context.Context) error {
		_, err := rpc.Call(ctx, uc, put, echoReq{Text: "from content"})
		return err
	}))
	var tr store.Trace
	if _, err := rpc.Call(store.WithTrace(context.Background(), &tr), cc, put, echoReq{Text: "post"}); err != nil {
		t.Fatal(err)
	}
	if _, lsns := tr.Seen(); lsns.Get("users") == 0 || lsns.Get("content") == 0 {
		t.Errorf("caller's trace = %v, want an LSN of users and of content", lsns)
	}
}

// The headers by hand, as curl sends them: X-Store-LSN alone asks for
// session reads; a malformed value is refused before the handler runs.
func TestStoreHeadersByHand(t *testing.T) {
	st := startGroup(t, "users", "users-db-1")
	in := startStoreService(t, "users", st, nil)
	call := func(method string, h map[string]string) (int, http.Header, string) {
		req, err := http.NewRequest(http.MethodPost, "http://"+in.Addr+rpc.Path("users", method), strings.NewReader(`{"text":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, body := call("put", nil)
	if code != http.StatusOK || h.Get(rpc.HeaderStoreNode) != "users-db-1" || !strings.HasPrefix(h.Get(rpc.HeaderStoreLSN), "users=") {
		t.Fatalf("put = %d %s, headers %v; want 200 with the store node and an LSN of group users", code, body, h)
	}
	code, _, body = call("get", map[string]string{rpc.HeaderStoreLSN: h.Get(rpc.HeaderStoreLSN)})
	if code != http.StatusOK || !strings.Contains(body, `"level":"session"`) || !strings.Contains(body, `"value":"x"`) {
		t.Errorf("get with X-Store-LSN = %d %s, want session reads of the value", code, body)
	}
	for _, bad := range []map[string]string{
		{rpc.HeaderStoreLSN: "users=x"},
		{rpc.HeaderStoreConsistency: "linearizable"},
	} {
		if code, _, body := call("get", bad); code != http.StatusBadRequest || !strings.Contains(body, `"bad_request"`) {
			t.Errorf("get with %v = %d %s, want 400 bad_request", bad, code, body)
		}
	}
}
