// Package rpctest serves a service's methods for tests: a real rpc.Server
// on a loopback HTTP server, and a real rpc.Client of it, so that a
// service's test crosses the wire exactly as the gateway's calls do.
package rpctest

import (
	"net/http/httptest"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// Serve makes a server with cfg, adds its methods with register, serves it
// on a loopback HTTP server, and returns a client of that one instance
// (named cfg.Instance, with cfg.Codes), and the HTTP server for a test that
// closes it or calls it by hand. Both are closed when the test ends.
func Serve(tb testing.TB, cfg rpc.ServerConfig, register func(*rpc.Server)) (*rpc.Client, *httptest.Server) {
	tb.Helper()
	srv, err := rpc.NewServer(cfg)
	if err != nil {
		tb.Fatalf("rpc.NewServer: %v", err)
	}
	register(srv)
	hs := httptest.NewServer(srv)
	tb.Cleanup(hs.Close)
	instance := rpc.Instance{Name: cfg.Instance, Addr: hs.Listener.Addr().String()}
	cl, err := rpc.New(rpc.Config{Service: cfg.Service, Codes: cfg.Codes,
		Instances: func() []rpc.Instance { return []rpc.Instance{instance} }})
	if err != nil {
		tb.Fatalf("rpc.New: %v", err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl, hs
}
