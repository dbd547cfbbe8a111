package app_test

import (
	"net/http"
	"testing"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// startStoreServer runs the store role on addr over dir.
func startStoreServer(tb testing.TB, addr, dir string) *server.Server {
	tb.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr, cfg.DataDir, cfg.NodeName = addr, dir, "primary-1"
	srv, err := server.New(cfg, server.Deps{})
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	if err := srv.Open(); err != nil {
		tb.Fatalf("store Open: %v", err)
	}
	return srv
}

// Stage 2 in one process: the app talks to the store over the network
// through the store client. When the store goes away the app answers 503
// and recovers by itself when it comes back, with nothing lost.
func TestOverNetworkStoreOutage(t *testing.T) {
	dir := t.TempDir()
	srv := startStoreServer(t, "127.0.0.1:0", dir)
	addr := srv.Addr()
	client := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "primary-1", Addr: addr, Primary: true}}})
	t.Cleanup(func() { client.Close() })
	s := newStackOn(t, client)

	c := s.client(t)
	c.signup("remote")
	id := c.post("Over the wire", "Stored by the primary.")["id"].(string)
	r := s.client(t).get("/p/" + id)
	want(t, "post page", r, http.StatusOK)
	if got := r.Header.Get("X-Store"); got != "primary-1" {
		t.Errorf("X-Store = %q, want primary-1", got)
	}
	if r.Header.Get("X-Store-LSN") == "" || r.Header.Get("X-Store-LSN") == "0" {
		t.Errorf("X-Store-LSN = %q, want the primary's LSN", r.Header.Get("X-Store-LSN"))
	}

	if err := srv.Close(); err != nil {
		t.Fatalf("store Close: %v", err)
	}
	r = s.client(t).get("/")
	want(t, "home while the primary is down", r, http.StatusServiceUnavailable)
	wantIn(t, "503 page", r, "The database is unreachable")
	want(t, "API write while the primary is down", c.json("POST", "/api/v1/posts", map[string]any{"title": "t", "body": "b"}), http.StatusServiceUnavailable)

	srv = startStoreServer(t, addr, dir)
	t.Cleanup(func() { srv.Close() })
	r = s.client(t).get("/api/v1/posts/" + id)
	want(t, "post after the primary is back", r, http.StatusOK)
	if got := r.JSON(t)["post"].(map[string]any)["title"]; got != "Over the wire" {
		t.Errorf("title = %v, want the acknowledged post", got)
	}
	want(t, "session still valid", c.get("/api/v1/me"), http.StatusOK)
}
