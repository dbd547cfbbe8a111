package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// call sends one request to srv and returns the status, headers and body.
func call(tb testing.TB, srv *server.Server, method, path, body string) (int, http.Header, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, "http://"+srv.Addr()+path, strings.NewReader(body))
	if err != nil {
		tb.Fatalf("NewRequest(%s %s): %v", method, path, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestHTTPCurlFlow(t *testing.T) {
	srv := startServer(t, nil)

	code, h, body := call(t, srv, "PUT", "/v1/kv/posts/2024%2Fhello", "first post")
	if code != 200 || string(body) != "{\"lsn\":1}\n" || h.Get("X-LSN") != "1" || h.Get("X-Store-Node") != "store-1" {
		t.Fatalf("PUT = %d %q X-LSN=%q X-Store-Node=%q, want 200 {\"lsn\":1} 1 store-1", code, body, h.Get("X-LSN"), h.Get("X-Store-Node"))
	}
	code, h, body = call(t, srv, "GET", "/v1/kv/posts/2024%2Fhello", "")
	if code != 200 || string(body) != "first post" || h.Get("X-LSN") != "1" {
		t.Fatalf("GET = %d %q X-LSN=%q, want 200 %q 1", code, body, h.Get("X-LSN"), "first post")
	}
	// An unescaped slash in the key is part of the key too.
	if code, _, body := call(t, srv, "GET", "/v1/kv/posts/2024/hello", ""); code != 200 || string(body) != "first post" {
		t.Fatalf("GET with a raw slash = %d %q, want 200", code, body)
	}

	txn := `{"ops":[{"op":"check","bucket":"posts","key":"2024/hello","value":"first post"},
		{"op":"put","bucket":"posts","key":"2024/bin","value_b64":"AP8="},
		{"op":"put","bucket":"posts","key":"2025/x","value":""},
		{"op":"delete","bucket":"posts","key":"nope"}]}`
	if code, h, body := call(t, srv, "POST", "/v1/txn", txn); code != 200 || h.Get("X-LSN") != "2" {
		t.Fatalf("POST /v1/txn = %d %s X-LSN=%q, want 200 and LSN 2", code, body, h.Get("X-LSN"))
	}
	code, h, body = call(t, srv, "GET", "/v1/scan/posts?prefix=2024/&reverse=true", "")
	want := `{"lsn":2,"pairs":[{"key":"2024/hello","value":"first post"},{"key":"2024/bin","value_b64":"AP8="}]}` + "\n"
	if code != 200 || string(body) != want || h.Get("Content-Type") != "application/json" {
		t.Fatalf("scan = %d %s, want 200 %s", code, body, want)
	}
	if code, _, body := call(t, srv, "GET", "/v1/scan/posts?start=2025&limit=1", ""); code != 200 || !strings.Contains(string(body), `"key":"2025/x","value":""`) {
		t.Fatalf("scan from 2025 = %d %s", code, body)
	}
	if code, _, body := call(t, srv, "DELETE", "/v1/kv/posts/2024%2Fhello", ""); code != 200 || string(body) != "{\"lsn\":3}\n" {
		t.Fatalf("DELETE = %d %s, want 200 {\"lsn\":3}", code, body)
	}
	if code, h, _ := call(t, srv, "GET", "/v1/kv/posts/2024%2Fhello", ""); code != 404 || h.Get("X-LSN") != "3" {
		t.Fatalf("GET after DELETE = %d X-LSN=%q, want 404 at LSN 3", code, h.Get("X-LSN"))
	}
	code, _, body = call(t, srv, "GET", "/v1/status", "")
	var st server.Status
	if err := json.Unmarshal(body, &st); code != 200 || err != nil || st.LSN != 3 || st.Keys != 2 || !st.Ready {
		t.Fatalf("status = %d %s (%v), want LSN 3, 2 keys, ready", code, body, err)
	}
}

// TestHTTPBadInput sends malformed and oversized requests: each gets its
// 4xx status and a JSON error, and none changes anything.
func TestHTTPBadInput(t *testing.T) {
	srv := startServer(t, func(c *server.Config) { c.MaxValueBytes = 1000 })
	if code, _, body := call(t, srv, "PUT", "/v1/kv/b/exists", "v"); code != 200 {
		t.Fatalf("setup PUT = %d %s", code, body)
	}
	put := func(bucket, key, value string) string {
		return fmt.Sprintf(`{"op":"put","bucket":%q,"key":%q,"value":%q}`, bucket, key, value)
	}
	first := put("b", "partial", "x") + ","
	manyOps := strings.Repeat(put("b", "k", "v")+",", store.MaxTxnOps) + put("b", "k", "v")

	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{"invalid JSON", "POST", "/v1/txn", `{"ops":[`, 400},
		{"not an object", "POST", "/v1/txn", `[1,2]`, 400},
		{"data after the object", "POST", "/v1/txn", `{"ops":[` + put("b", "partial", "x") + `]} {}`, 400},
		{"unknown field", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"put","bucket":"b","key":"k","value":"v","ttl":3}]}`, 400},
		{"no ops", "POST", "/v1/txn", `{"ops":[]}`, 400},
		{"unknown op", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"frob","bucket":"b","key":"k"}]}`, 400},
		{"empty bucket", "POST", "/v1/txn", `{"ops":[` + first + put("", "k", "v") + `]}`, 400},
		{"reserved bucket", "POST", "/v1/txn", `{"ops":[` + first + put("_log", "k", "v") + `]}`, 400},
		{"empty key", "POST", "/v1/txn", `{"ops":[` + first + put("b", "", "v") + `]}`, 400},
		{"put without value", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"put","bucket":"b","key":"k"}]}`, 400},
		{"value and value_b64", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"put","bucket":"b","key":"k","value":"a","value_b64":"YQ=="}]}`, 400},
		{"bad base64", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"put","bucket":"b","key":"k","value_b64":"!!"}]}`, 400},
		{"check without value or absent", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"check","bucket":"b","key":"k"}]}`, 400},
		{"delete with a value", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"delete","bucket":"b","key":"k","value":"v"}]}`, 400},
		{"key over MaxKeySize", "POST", "/v1/txn", `{"ops":[` + first + put("b", strings.Repeat("k", store.MaxKeySize+1), "v") + `]}`, 413},
		{"value over the limit", "POST", "/v1/txn", `{"ops":[` + first + put("b", "k", strings.Repeat("v", 1001)) + `]}`, 413},
		{"too many ops", "POST", "/v1/txn", `{"ops":[` + first + manyOps + `]}`, 413},
		{"body over MaxRequestBytes", "POST", "/v1/txn", `{"ops":[` + first + put("b", "k", strings.Repeat("v", store.MaxRequestBytes)) + `]}`, 413},
		{"failed check", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"check","bucket":"b","key":"exists","absent":true}]}`, 409},
		{"failed value check", "POST", "/v1/txn", `{"ops":[` + first + `{"op":"check","bucket":"b","key":"exists","value":"w"}]}`, 409},
		{"PUT value over the limit", "PUT", "/v1/kv/b/partial", strings.Repeat("v", 1001), 413},
		{"PUT to a reserved bucket", "PUT", "/v1/kv/_meta/lsn", "1", 400},
		{"PUT to an empty bucket", "PUT", "/v1/kv//partial", "1", 400},
		{"PUT with an empty key", "PUT", "/v1/kv/b/", "1", 400},
		{"PUT without a key", "PUT", "/v1/kv/b", "1", 400},
		{"GET from a reserved bucket", "GET", "/v1/kv/_log/x", "", 400},
		{"GET a missing key", "GET", "/v1/kv/b/missing", "", 404},
		{"GET from a missing bucket", "GET", "/v1/kv/nobucket/k", "", 404},
		{"scan a missing bucket", "GET", "/v1/scan/nobucket", "", 404},
		{"scan a reserved bucket", "GET", "/v1/scan/_log", "", 400},
		{"scan with a bad limit", "GET", "/v1/scan/b?limit=ten", "", 400},
		{"scan over MaxScanLimit", "GET", fmt.Sprintf("/v1/scan/b?limit=%d", store.MaxScanLimit+1), "", 400},
		{"scan with a bad reverse", "GET", "/v1/scan/b?reverse=maybe", "", 400},
		{"unknown route", "GET", "/v2/kv/b/k", "", 404},
		{"GET /v1/txn", "GET", "/v1/txn", "", 405},
		{"POST to a key", "POST", "/v1/kv/b/partial", "x", 405},
		{"DELETE a scan", "DELETE", "/v1/scan/b", "", 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := call(t, srv, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.code)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || h.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s body = %q (%v), want a JSON error", tt.method, tt.path, body, err)
			}
			if h.Get("X-LSN") != "1" || h.Get("X-Store-Node") != "store-1" {
				t.Fatalf("%s %s: X-LSN=%q X-Store-Node=%q, want 1 and store-1", tt.method, tt.path, h.Get("X-LSN"), h.Get("X-Store-Node"))
			}
			t.Logf("%d %s", code, e.Error)
		})
	}
	if code, _, _ := call(t, srv, "GET", "/v1/kv/b/partial", ""); code != 404 {
		t.Fatalf("GET b/partial = %d after refused requests, want 404: something was partly applied", code)
	}
	if lsn := srv.DB().LSN(); lsn != 1 {
		t.Fatalf("LSN after refused requests = %d, want 1", lsn)
	}
}

func TestClient(t *testing.T) {
	srv := startServer(t, nil)
	c := newClient(t, srv.Addr())
	ctx := context.Background()

	var tr store.Trace
	tctx := store.WithTrace(ctx, &tr)
	bin := []byte{0, 0xff, 'a'}
	lsn, err := c.Txn(tctx, store.IfAbsent("u", "ann"), store.Put("u", "ann", []byte("Ann")), store.Put("u", "bin", bin), store.Put("u", "nil", nil))
	if err != nil || lsn != 1 {
		t.Fatalf("Txn = %d, %v, want 1", lsn, err)
	}
	if tr.Node != "store-1" || tr.LSN != 1 {
		t.Fatalf("Trace after Txn = %q %d, want store-1 1", tr.Node, tr.LSN)
	}
	got, err := c.Get(ctx, "u", "bin")
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("Get(u, bin) = %v, %v, want %v", got, err, bin)
	}
	pairs, err := c.Scan(store.WithConsistency(ctx, store.Session, lsn), "u", store.ScanOptions{Prefix: "", Reverse: true, Limit: 2})
	if err != nil || len(pairs) != 2 || pairs[0].Key != "nil" || len(pairs[0].Value) != 0 || pairs[0].Value == nil || !bytes.Equal(pairs[1].Value, bin) {
		t.Fatalf("Scan = %+v, %v, want nil then bin", pairs, err)
	}
	pairs, err = c.Scan(ctx, "u", store.ScanOptions{Start: "a", End: "b"})
	if err != nil || len(pairs) != 1 || string(pairs[0].Value) != "Ann" {
		t.Fatalf("Scan [a, b) = %+v, %v, want ann", pairs, err)
	}

	_, err = c.Get(ctx, "u", "bob")
	wantErr(t, "Get a missing key", err, store.ErrNotFound)
	_, err = c.Scan(ctx, "none", store.ScanOptions{})
	wantErr(t, "Scan a missing bucket", err, store.ErrNotFound)
	_, err = c.Txn(ctx, store.IfAbsent("u", "ann"), store.Put("u", "ann", []byte("Ann 2")))
	wantErr(t, "Txn with a failing check", err, store.ErrConditionFailed)
	_, err = c.Txn(ctx, store.Put("_u", "ann", nil))
	wantErr(t, "Txn on a reserved bucket", err, store.ErrInvalid)
	_, err = c.Txn(ctx, store.Put("u", "big", make([]byte, store.MaxValueSize+1)))
	wantErr(t, "Txn with a value over MaxValueSize", err, store.ErrTooLarge)
	_, err = c.Get(ctx, "u", strings.Repeat("k", store.MaxKeySize+1))
	wantErr(t, "Get of a key over MaxKeySize", err, store.ErrTooLarge)
}

func TestClientUnavailable(t *testing.T) {
	ctx := context.Background()
	noPrimary := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "r", Addr: "127.0.0.1:1"}}})
	_, err := noPrimary.Txn(ctx, store.Put("b", "k", nil))
	wantErr(t, "Txn without a primary", err, store.ErrUnavailable)
	_, err = noPrimary.Get(ctx, "b", "k")
	wantErr(t, "Get without a primary", err, store.ErrUnavailable)

	srv := startServer(t, nil)
	c := newClient(t, srv.Addr())
	if _, err := c.Txn(ctx, store.Put("b", "k", nil)); err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = c.Get(ctx, "b", "k")
	wantErr(t, "Get from a closed server", err, store.ErrUnavailable)
	_, err = c.Txn(ctx, store.Put("b", "k", nil))
	wantErr(t, "Txn to a closed server", err, store.ErrUnavailable)
}

// TestTraceSharedByGoroutines records into one Trace from many calls at once
// (run with -race).
func TestTraceSharedByGoroutines(t *testing.T) {
	srv := startServer(t, nil)
	c := newClient(t, srv.Addr())
	var tr store.Trace
	ctx := store.WithTrace(context.Background(), &tr)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := c.Txn(ctx, store.Put("b", fmt.Sprint(i), nil)); err != nil {
				t.Errorf("Txn: %v", err)
			}
			_, _ = tr.Values()
		})
	}
	wg.Wait()
	if node, lsn := tr.Values(); node != "store-1" || lsn != 8 {
		t.Fatalf("Trace = %q %d, want store-1 8 (the highest LSN seen)", node, lsn)
	}
}

func TestServerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := startServerWith(t, server.Deps{Metrics: reg}, nil)
	call(t, srv, "PUT", "/v1/kv/b/k", "v")
	call(t, srv, "GET", "/v1/kv/b/missing", "")
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + " "
			}
			switch {
			case m.GetCounter() != nil:
				got[f.GetName()+" "+labels] = fmt.Sprint(m.GetCounter().GetValue())
			case m.GetHistogram() != nil:
				got[f.GetName()] = fmt.Sprint(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				got[f.GetName()] = fmt.Sprint(m.GetGauge().GetValue())
			}
		}
	}
	for k, want := range map[string]string{
		"scalestack_store_requests_total code=200 route=kv_put ": "1",
		"scalestack_store_requests_total code=404 route=kv_get ": "1",
		"scalestack_store_commit_seconds":                        "1",
		"scalestack_store_commit_batch_txns":                     "1",
		"scalestack_store_lsn":                                   "1",
	} {
		if got[k] != want {
			t.Errorf("metric %q = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
	// A second server on the same registry is refused, not a panic.
	cfg := server.DefaultConfig()
	if _, err := server.New(cfg, server.Deps{Metrics: reg}); err == nil {
		t.Errorf("New with already registered metrics: err = nil, want an error")
	}
}

// TestCloseFinishesInFlightWrites closes the server while writers are busy:
// every write either succeeds (and is then on disk) or fails as
// unavailable, and the DB holds exactly the acknowledged writes or more.
func TestCloseFinishesInFlightWrites(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, func(c *server.Config) { c.DataDir = dir })
	c := newClient(t, srv.Addr())
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	started := make(chan struct{}, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				_, err := c.Txn(context.Background(), store.Put("b", key, []byte(key)))
				if err != nil {
					if !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("Txn(%s) during Close: %v, want ErrUnavailable", key, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
				select {
				case started <- struct{}{}:
				default:
				}
			}
		})
	}
	for range 20 {
		<-started
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	db := mustOpenPath(t, dir+"/store.db")
	for _, key := range acked {
		if _, err := db.Get(context.Background(), "b", key); err != nil {
			t.Fatalf("acknowledged %s: Get after Close: %v", key, err)
		}
	}
	t.Logf("%d acknowledged writes, all present", len(acked))
}

func TestConfig(t *testing.T) {
	cfg := server.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	settings.Register(fs, cfg.Settings())
	err := fs.Parse([]string{"--store-max-value-bytes=2048", "--store-log-retention=5", "--store-max-batch=8", "--store-batch-delay=1ms"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.MaxValueBytes != 2048 || cfg.LogRetention != 5 || cfg.MaxBatchTxns != 8 || cfg.BatchDelay != time.Millisecond {
		t.Fatalf("flags gave %+v", cfg)
	}
	for name, edit := range map[string]func(*server.Config){
		"Addr":              func(c *server.Config) { c.Addr = "" },
		"DataDir":           func(c *server.Config) { c.DataDir = "" },
		"MaxValueBytes":     func(c *server.Config) { c.MaxValueBytes = store.MaxValueSize + 1 },
		"LogRetention":      func(c *server.Config) { c.LogRetention = -1 },
		"MaxBatchTxns":      func(c *server.Config) { c.MaxBatchTxns = 0 },
		"BatchDelay":        func(c *server.Config) { c.BatchDelay = -time.Second },
		"ReadHeaderTimeout": func(c *server.Config) { c.ReadHeaderTimeout = 0 },
		"ShutdownTimeout":   func(c *server.Config) { c.ShutdownTimeout = 0 },
	} {
		c := server.DefaultConfig()
		edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate with a bad %s = %v, want an error naming it", name, err)
		}
	}
}

func TestServerReadyAndStatus(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	srv, err := server.New(cfg, server.Deps{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if srv.Ready() {
		t.Fatalf("Ready before Open = true")
	}
	if err := srv.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	select {
	case <-srv.ReadyCh():
	default:
		t.Fatalf("ReadyCh not closed after Open")
	}
	st, ok := srv.Status().(server.Status)
	if !ok || !st.Ready || st.Addr != srv.Addr() || st.Epoch != 1 {
		t.Fatalf("Status() = %#v, want ready at %s, epoch 1", srv.Status(), srv.Addr())
	}
	if _, err := json.Marshal(srv.Status()); err != nil {
		t.Fatalf("Status is not JSON-marshalable: %v", err)
	}
}

// TestHTTPChunkedBodyLimits sends bodies without a Content-Length, so that
// only the server's body limit (http.MaxBytesReader) can catch them.
func TestHTTPChunkedBodyLimits(t *testing.T) {
	srv := startServer(t, func(c *server.Config) { c.MaxValueBytes = 1000 })
	send := func(method, path string, body io.Reader) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+srv.Addr()+path, body)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := send("PUT", "/v1/kv/b/k", io.MultiReader(strings.NewReader(strings.Repeat("v", 1000)))); code != 200 {
		t.Fatalf("chunked PUT of 1000 bytes = %d, want 200", code)
	}
	if code := send("PUT", "/v1/kv/b/k", io.MultiReader(strings.NewReader(strings.Repeat("v", 1001)))); code != 413 {
		t.Fatalf("chunked PUT of 1001 bytes = %d, want 413", code)
	}
	big := `{"ops":[{"op":"put","bucket":"b","key":"k","value":"` + strings.Repeat("v", store.MaxRequestBytes) + `"}]}`
	if code := send("POST", "/v1/txn", io.MultiReader(strings.NewReader(big))); code != 413 {
		t.Fatalf("chunked txn over MaxRequestBytes = %d, want 413", code)
	}
	if got, _ := srv.DB().Get(context.Background(), "b", "k"); len(got) != 1000 {
		t.Fatalf("after refused writes, b/k holds %d bytes, want the first 1000", len(got))
	}
}
