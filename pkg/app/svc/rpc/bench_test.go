package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// The cost of the client over a plain http.Client doing the same POST of
// the same JSON to the same Server over loopback: round robin, the breaker's
// lock, the deadline header, the trace hook and the error table
// (bench/README.md, "Service calls").

func benchServer(b *testing.B) *instance {
	b.Helper()
	return startInstance(b, "one", nil)
}

func BenchmarkCallClient(b *testing.B) {
	in := benchServer(b)
	cl := newClient(b, rpc.Config{}, in)
	ctx := context.Background()
	req := echoReq{Text: "hello, service"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := rpc.Call(ctx, cl, echo, req)
		if err != nil || got.Text != req.Text {
			b.Fatalf("Call = %+v, %v", got, err)
		}
	}
}

func BenchmarkCallPlainHTTP(b *testing.B) {
	in := benchServer(b)
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
	}}
	url := "http://" + in.Addr + rpc.Path(service, echo.Name)
	ctx := context.Background()
	req := echoReq{Text: "hello, service"}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		body, _ := json.Marshal(req)
		hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(hr)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got echoResp
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(data, &got) != nil || got.Text != req.Text {
			b.Fatalf("POST = %d %s, %v", resp.StatusCode, data, err)
		}
	}
}

// inProcess is a RoundTripper that serves a request with a handler in the
// same goroutine: the same pair without the loopback's syscalls and
// scheduling, whose noise hides the client's own cost on a busy machine.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func inProcessServer(b *testing.B) http.Handler {
	b.Helper()
	s, err := rpc.NewServer(rpc.ServerConfig{Service: service, Instance: "one", Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	rpc.Handle(s, echo, func(ctx context.Context, req echoReq) (echoResp, error) {
		return echoResp{Text: req.Text, Instance: "one"}, nil
	})
	return s
}

func BenchmarkInProcessClient(b *testing.B) {
	hc := &http.Client{Transport: inProcess{inProcessServer(b)}}
	list := []rpc.Instance{{Name: "one", Addr: "one.invalid:1"}}
	cl := newClient(b, rpc.Config{HTTPClient: hc, Instances: func() []rpc.Instance { return list }})
	ctx := context.Background()
	req := echoReq{Text: "hello, service"}
	b.ReportAllocs()
	for b.Loop() {
		got, err := rpc.Call(ctx, cl, echo, req)
		if err != nil || got.Text != req.Text {
			b.Fatalf("Call = %+v, %v", got, err)
		}
	}
}

func BenchmarkInProcessPlainHTTP(b *testing.B) {
	hc := &http.Client{Transport: inProcess{inProcessServer(b)}}
	url := "http://one.invalid:1" + rpc.Path(service, echo.Name)
	ctx := context.Background()
	req := echoReq{Text: "hello, service"}
	b.ReportAllocs()
	for b.Loop() {
		body, _ := json.Marshal(req)
		hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		hr.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(hr)
		if err != nil {
			b.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got echoResp
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(data, &got) != nil || got.Text != req.Text {
			b.Fatalf("POST = %d %s, %v", resp.StatusCode, data, err)
		}
	}
}
