package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

const (
	testToken  = "0f3c9a-store-token-of-this-test"
	wrongToken = "0f3c9a-store-token-of-another-key"
)

// callAuth sends one request to srv with the given Authorization header
// ("" sends none) and returns the status, the headers and a JSON body.
func callAuth(tb testing.TB, client *http.Client, baseURL, method, path, authz, body string) (int, http.Header, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b []byte
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		// Not the replication stream, which never ends by itself.
		b, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	}
	return resp.StatusCode, resp.Header, b
}

// storeRoutes is one request of every route family of the store port.
// served is the status an authenticated request gets from a lone primary
// with failover (the request reached the route and was decided there).
var storeRoutes = []struct {
	method, path, body string
	served             int
}{
	{http.MethodPut, "/v1/kv/users/ann", `{"email":"ann@example.com"}`, http.StatusOK},
	{http.MethodGet, "/v1/kv/users/ann", "", http.StatusOK},
	{http.MethodGet, "/v1/scan/users?prefix=a", "", http.StatusOK},
	{http.MethodPost, "/v1/txn", `{"ops":[{"op":"put","bucket":"users","key":"bob","value":"x"}]}`, http.StatusOK},
	{http.MethodDelete, "/v1/kv/users/bob", "", http.StatusOK},
	{http.MethodGet, "/v1/status", "", http.StatusOK},
	{http.MethodGet, "/v1/checksum", "", http.StatusOK},
	{http.MethodGet, "/v1/snapshot", "", http.StatusOK},
	{http.MethodGet, "/v1/replicate?from=1&prev_epoch=0&epoch=0&node=intruder", "", http.StatusOK},
	{http.MethodPost, "/v1/lease", `{"op":"prevote","epoch":99,"node":"intruder","addr":"127.0.0.1:1"}`, http.StatusOK},
	{http.MethodPost, "/v1/promote", "", http.StatusOK},
	{http.MethodPost, "/v1/handover", "", http.StatusBadRequest}, // no ?to=: refused for its input, after authentication
	{http.MethodGet, "/v1/no-such-route", "", http.StatusNotFound},
}

// startKeyedPrimary starts a lone primary with failover whose port wants
// testToken, and waits until it holds the lease.
func startKeyedPrimary(t *testing.T, edit func(*server.Config)) (*group, *server.Server) {
	t.Helper()
	g := newGroup(t, true, func(c *server.Config) {
		c.Token = testToken
		if edit != nil {
			edit(c)
		}
	})
	s := g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	return g, s
}

// TestStorePortRefusesWithoutToken: with a token, every route of the
// store port answers 401 with WWW-Authenticate: Bearer and a JSON error to
// a request without it or with another, applies nothing, says nothing of
// the primary, and serves the request that carries it.
func TestStorePortRefusesWithoutToken(t *testing.T) {
	_, s := startKeyedPrimary(t, nil)
	base := "http://" + s.Addr()
	for _, rt := range storeRoutes {
		for _, authz := range []string{"", "Bearer " + wrongToken, "Bearer ", "Basic " + testToken, testToken} {
			t.Run(fmt.Sprintf("%s %s auth=%q", rt.method, rt.path, authz), func(t *testing.T) {
				code, h, body := callAuth(t, http.DefaultClient, base, rt.method, rt.path, authz, rt.body)
				if code != http.StatusUnauthorized {
					t.Fatalf("%s %s with Authorization %q = %d %s, want 401", rt.method, rt.path, authz, code, body)
				}
				if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want Bearer", got)
				}
				var we struct{ Error string }
				if err := json.Unmarshal(body, &we); err != nil || we.Error == "" {
					t.Errorf("body = %q, want a JSON error (%v)", body, err)
				}
				for _, leak := range []string{store.HeaderPrimary, store.HeaderEpoch, store.HeaderLSN, store.HeaderNode} {
					if v := h.Get(leak); v != "" {
						t.Errorf("401 carries %s: %q", leak, v)
					}
				}
			})
		}
	}
	// Nothing the refused requests asked for happened.
	if code, _, body := callAuth(t, http.DefaultClient, base, http.MethodGet, "/v1/kv/users/ann", "Bearer "+testToken, ""); code != http.StatusNotFound {
		t.Fatalf("GET users/ann after refused PUTs = %d %s, want 404", code, body)
	}
	if st := replStatus(s); st.Role != server.RolePrimary || st.LSN != 0 {
		t.Fatalf("after refused requests: role %s LSN %d, want primary at LSN 0", st.Role, st.LSN)
	}
	for _, rt := range storeRoutes {
		t.Run(fmt.Sprintf("%s %s with the token", rt.method, rt.path), func(t *testing.T) {
			code, _, body := callAuth(t, http.DefaultClient, base, rt.method, rt.path, "Bearer "+testToken, rt.body)
			if code != rt.served {
				t.Fatalf("%s %s with the token = %d %s, want %d", rt.method, rt.path, code, body, rt.served)
			}
		})
	}
}

// TestStorePortOpenWithoutToken: without a token (loopback development)
// the port stays open, as before.
func TestStorePortOpenWithoutToken(t *testing.T) {
	s := startServer(t, nil)
	code, _, body := callAuth(t, http.DefaultClient, "http://"+s.Addr(), http.MethodPut, "/v1/kv/b/k", "", "v")
	if code != http.StatusOK {
		t.Fatalf("PUT without a token on an open store = %d %s, want 200", code, body)
	}
}

// TestClientPresentsToken: the Client with the token reads and writes; one
// without it, or with another, gets ErrUnauthorized.
func TestClientPresentsToken(t *testing.T) {
	s := startServer(t, func(c *server.Config) { c.Token = testToken })
	ctx := context.Background()
	client := func(token string) *store.Client {
		c := store.NewClient(store.ClientConfig{
			Resolver: store.StaticResolver{{Name: "store-1", Addr: s.Addr(), Primary: true}},
			Token:    token,
		})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	good := client(testToken)
	lsn := mustTxn(t, good, store.Put("b", "k", []byte("v")))
	if got, err := good.Get(store.WithConsistency(ctx, store.Session, lsn), "b", "k"); err != nil || string(got) != "v" {
		t.Fatalf("Get with the token = %q, %v, want v", got, err)
	}
	if pairs, err := good.Scan(ctx, "b", store.ScanOptions{}); err != nil || len(pairs) != 1 {
		t.Fatalf("Scan with the token = %v, %v, want one pair", pairs, err)
	}
	for _, token := range []string{"", wrongToken} {
		c := client(token)
		_, err := c.Txn(ctx, store.Put("b", "k", []byte("stolen")))
		wantErr(t, fmt.Sprintf("Txn with token %q", token), err, store.ErrUnauthorized)
		_, err = c.Get(ctx, "b", "k")
		wantErr(t, fmt.Sprintf("Get with token %q", token), err, store.ErrUnauthorized)
		_, err = c.Scan(ctx, "b", store.ScanOptions{})
		wantErr(t, fmt.Sprintf("Scan with token %q", token), err, store.ErrUnauthorized)
	}
	if got, _ := good.Get(ctx, "b", "k"); string(got) != "v" {
		t.Fatalf("value after refused writes = %q, want v", got)
	}
}

// TestKeyedGroupReplicatesAndFailsOver: three store nodes sharing a token
// replicate (a late replica bootstraps from a snapshot), hand over on
// promote and fail over when the primary stops, all over the guarded port;
// a fourth node with another token, listed among them, is refused by all
// of them: it gets no data, no vote and no lease.
func TestKeyedGroupReplicatesAndFailsOver(t *testing.T) {
	g, _ := startKeyedPrimary(t, func(c *server.Config) {
		c.Sync = 1
		c.LogRetention = 5 // the late replica must bootstrap from a snapshot
		if c.NodeName == "x" {
			c.Token = wrongToken
		}
	})
	g.start("r1", server.RoleReplica)
	c := store.NewClient(store.ClientConfig{Resolver: g, Token: testToken, Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	for i := range 20 {
		mustTxn(t, c, store.Put("b", fmt.Sprint(i), []byte("before")))
	}
	r2 := g.start("r2", server.RoleReplica)
	waitConverged(t, 10*time.Second, g.server("p"), g.server("r1"), r2)
	if st := replStatus(r2); st.Following == nil || st.Following.Snapshots == 0 {
		t.Fatalf("r2 following = %+v, want a snapshot bootstrap", st.Following)
	}
	waitVoters(t, g.server("p"), 3)
	x := g.start("x", server.RoleReplica)

	// Planned hand-over, asked with the token.
	code, _, body := callAuth(t, http.DefaultClient, "http://"+g.server("r1").Addr(), http.MethodPost, "/v1/promote", "Bearer "+testToken, "")
	if code != http.StatusOK {
		t.Fatalf("promote r1 = %d %s", code, body)
	}
	if got := g.primary(); got != "r1" {
		t.Fatalf("primary after promote = %q, want r1", got)
	}
	mustTxn(t, c, store.Put("b", "after-promote", []byte("x")))

	// Failover: the primary stops, a replica takes over, and writes resume.
	g.stop("r1")
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if p := g.primary(); p == "" || p == "r1" {
			return fmt.Errorf("primary %q, want a new one", p)
		}
		return nil
	})
	testwait.RetryUntil(t, 10*time.Second, func() error {
		_, err := c.Txn(context.Background(), store.Put("b", "after-failover", []byte("x")))
		return err
	})
	np := g.primary()
	for _, k := range []string{"0", "19", "after-promote", "after-failover"} {
		if _, err := g.server(np).DB().Get(context.Background(), "b", k); err != nil {
			t.Fatalf("new primary %s: Get(b/%s): %v", np, k, err)
		}
	}
	old := g.start("r1", server.RoleReplica)
	others := []*server.Server{g.server("p"), g.server("r2"), old}
	waitConverged(t, 10*time.Second, others...)

	// The node with another key, listed all along, got nothing.
	st := replStatus(x)
	if st.Role != server.RoleReplica || st.LSN != 0 || st.Lease == nil || st.Lease.Holder != "" {
		t.Fatalf("node with another token: role %s, LSN %d, lease %+v; want a replica at LSN 0 that knows no primary", st.Role, st.LSN, st.Lease)
	}
	if v := replStatus(g.server(np)).Lease.Voters; v["x"] != "" {
		t.Fatalf("voters %v include the node with another token", v)
	}
}

// TestStoreTLS: a group with TLS on the store port replicates and fails
// over over https; the Client with the CA reads and writes; plain http,
// and a client that does not trust the CA, are refused.
func TestStoreTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	nodeTLS := ca.TLS("127.0.0.1")
	g, p := startKeyedPrimary(t, func(c *server.Config) {
		c.Sync = 1
		c.TLS, c.PeerTLS = nodeTLS.Server, nodeTLS.Client
	})
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	c := store.NewClient(store.ClientConfig{Resolver: g, Token: testToken, TLS: nodeTLS.Client, Timeout: 10 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	for i := range 10 {
		mustTxn(t, c, store.Put("b", fmt.Sprint(i), []byte("x")))
	}
	waitConverged(t, 10*time.Second, p, g.server("r1"), g.server("r2"))

	// Plain HTTP to the TLS port gets no answer of the store.
	if resp, err := http.Get("http://" + p.Addr() + "/v1/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain http to the TLS port = %d, want a refusal", resp.StatusCode)
		}
	}
	// A client that does not trust the CA refuses the server.
	stranger := store.NewClient(store.ClientConfig{Resolver: g, Token: testToken, TLS: &tls.Config{RootCAs: testcert.NewCA(t).Pool()}})
	t.Cleanup(func() { _ = stranger.Close() })
	if _, err := stranger.Get(context.Background(), "b", "0"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Get trusting another CA = %v, want a certificate error", err)
	}
	// Over TLS the token is still required.
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: nodeTLS.Client.Clone()}}
	if code, _, body := callAuth(t, https, "https://"+p.Addr(), http.MethodGet, "/v1/snapshot", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("snapshot over TLS without the token = %d %s, want 401", code, body)
	}

	g.stop("p")
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if np := g.primary(); np == "" || np == "p" {
			return fmt.Errorf("primary %q, want a new one", np)
		}
		return nil
	})
	testwait.RetryUntil(t, 10*time.Second, func() error {
		_, err := c.Txn(context.Background(), store.Put("b", "after", []byte("x")))
		return err
	})
	old := g.start("p", server.RolePrimary)
	waitConverged(t, 10*time.Second, g.server("r1"), g.server("r2"), old)
}
