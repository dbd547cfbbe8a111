package node_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
)

// adminGet fetches path from a node's admin endpoints with the given
// Authorization header ("" for none).
func adminGet(t testing.TB, n *node.Node, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+n.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// keyedNode starts a node with a cluster key read from a file, a cache
// password and an edge purge token, and a command line holding all three;
// it returns the node and every secret it knows.
func keyedNode(t *testing.T, admin func(*node.AdminConfig)) (*node.Node, []string) {
	t.Helper()
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const cachePassword, purgeToken, other = "cache-pw-3f9a1c", "purge-tok-77b2e0", "api-secret-c0ffee"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	t.Cleanup(origin.Close)
	tc := testcluster.New(t)
	n := tc.StartWith("keyed", []string{node.RolePrimary, node.RoleCache, node.RoleEdge}, func(c *node.Config) {
		c.NATS = node.NATSOff
		c.ClusterKeyFile = keyFile
		c.RoleConfig.Cache.Password = cachePassword
		c.RoleConfig.Edge.PurgeToken = purgeToken
		c.RoleConfig.Edge.Origin = origin.URL
		c.CommandLine = []string{"/usr/local/bin/node", "run", "--roles", "primary,cache,edge", "--name", "keyed",
			"--cluster-key", key, "--cache-password=" + cachePassword, "-edge-purge-token", purgeToken, "--my-api-secret", other}
		if admin != nil {
			admin(&c.Admin)
		}
	})
	token, err := node.AdminToken(key)
	if err != nil || token == "" {
		t.Fatalf("AdminToken = %q, %v; want a token", token, err)
	}
	raw, _ := cluster.ParseKey(key)
	return n, []string{key, token, cachePassword, purgeToken, other, cluster.DeriveSecret(raw, "nats")}
}

// With a cluster key, every admin endpoint but /healthz and /readyz wants
// the admin token derived from it (issue 15: the admin port answered
// anyone on --addr, and /debug/pprof/cmdline printed every flag).
func TestAdminEndpointsWantTheToken(t *testing.T) {
	n, secrets := keyedNode(t, nil)
	bearer := "Bearer " + secrets[1]

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := adminGet(t, n, path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token = %d, want 200 (load balancers and the launcher poll it)", path, code)
		}
	}
	private := []string{"/status", "/metrics", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap",
		"/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"}
	for _, path := range private {
		for _, auth := range []string{"", "Bearer wrong", "Bearer", "Basic " + secrets[1], secrets[1]} {
			if code, _ := adminGet(t, n, path, auth); code != http.StatusUnauthorized {
				t.Errorf("GET %s with Authorization %q = %d, want 401", path, auth, code)
			}
		}
		if code, body := adminGet(t, n, path, bearer); code != http.StatusOK {
			t.Errorf("GET %s with the token = %d (%.100s), want 200", path, code, body)
		}
	}
	if code, _ := adminGet(t, n, "/nothing-here", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /nothing-here without a token = %d, want 401 (nothing about the node without it)", code)
	}

	// No secret is readable through any endpoint, even with the token.
	for _, path := range []string{"/status", "/metrics", "/debug/pprof/cmdline"} {
		_, body := adminGet(t, n, path, bearer)
		for i, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s shows secret %d (%.8s...)", path, i, s)
			}
		}
	}
	_, cmdline := adminGet(t, n, "/debug/pprof/cmdline", bearer)
	got := strings.Split(cmdline, "\x00")
	want := []string{"/usr/local/bin/node", "run", "--roles", "primary,cache,edge", "--name", "keyed",
		"--cluster-key", node.Redacted, "--cache-password=" + node.Redacted, "-edge-purge-token", node.Redacted, "--my-api-secret", node.Redacted}
	if !slices.Equal(got, want) {
		t.Errorf("cmdline = %q, want %q", got, want)
	}
}

// The admin server cuts a client that trickles its request (issue 15: a
// slow body stayed open 70 s).
func TestAdminTimeouts(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n, _ := keyedNode(t, func(a *node.AdminConfig) { a.ReadHeaderTimeout, a.ReadTimeout = timeout, timeout })
	for _, tt := range []struct{ name, head string }{
		{"slow head", "GET /status HTTP/1.1\r\nHost: admin\r\n"},
		{"slow body", "POST /status HTTP/1.1\r\nHost: admin\r\nContent-Length: 100000\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", n.AdminAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, tt.head)
			go func() { // a byte every 50ms, until the server hangs up
				for {
					time.Sleep(50 * time.Millisecond)
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after 5s of trickling, want it cut after about %v", timeout)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("connection cut after %v, want about %v", d, timeout)
			}
		})
	}
}

// TestAdminMaxConns: past MaxConns open connections, the admin port serves
// nobody new until one closes.
func TestAdminMaxConns(t *testing.T) {
	n, _ := keyedNode(t, func(a *node.AdminConfig) { a.MaxConns = 2 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", n.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // both accepted and held by the server
	healthz := func() error {
		c := &http.Client{Timeout: 300 * time.Millisecond}
		resp, err := c.Get("http://" + n.AdminAddr() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := healthz(); err == nil {
		t.Fatalf("GET /healthz with 2 of MaxConns 2 connections held: served, want it to wait")
	}
	held[0].Close()
	testwait.RetryUntil(t, 5*time.Second, healthz) // served once a held connection closed
}

// Validate: an admin port off loopback needs a cluster key, and the key
// may come from a file, but not from a file and a different flag.
func TestAdminConfigValidate(t *testing.T) {
	key, _ := cluster.GenerateKey()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name string
		edit func(*node.Config)
		want string // "" for valid
	}{
		{"defaults", func(*node.Config) {}, ""},
		{"admin on loopback elsewhere", func(c *node.Config) { c.Admin.Addr = "127.0.0.9:9191" }, ""},
		{"admin off loopback without key", func(c *node.Config) { c.Admin.Addr = "10.1.2.3:9090" }, "--admin-addr"},
		{"admin on every interface without key", func(c *node.Config) { c.Admin.Addr = "0.0.0.0:9090" }, "--admin-addr"},
		{"admin off loopback with key", func(c *node.Config) { c.Admin.Addr, c.ClusterKey = "10.1.2.3:9090", key }, ""},
		{"admin off loopback with key file", func(c *node.Config) { c.Admin.Addr, c.ClusterKeyFile = "10.1.2.3:9090", keyFile }, ""},
		{"bad admin address", func(c *node.Config) { c.Admin.Addr = "localhost:9090" }, "--admin-addr"},
		{"admin port out of range", func(c *node.Config) { c.Admin.Addr = "127.0.0.1:70000" }, "--admin-addr"},
		{"missing key file", func(c *node.Config) { c.ClusterKeyFile = filepath.Join(dir, "nope") }, "--cluster-key-file"},
		{"empty key file", func(c *node.Config) { c.ClusterKeyFile = empty }, "--cluster-key-file"},
		{"key and a file that differs", func(c *node.Config) { c.ClusterKey, c.ClusterKeyFile = "other", keyFile }, "--cluster-key-file"},
		{"key and the same file", func(c *node.Config) { c.ClusterKey, c.ClusterKeyFile = key, keyFile }, ""},
		{"no admin timeout", func(c *node.Config) { c.Admin.ReadTimeout = 0 }, "ReadTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.RoleNames = []string{node.RoleCache}
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !errors.Is(err, node.ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want a configuration error naming %s", err, tt.want)
			}
			if err == nil && tt.name == "admin off loopback with key file" && cfg.ClusterKey != key {
				t.Errorf("ClusterKey after Validate = %q, want the key from the file", cfg.ClusterKey)
			}
			if err == nil && cfg.Validate() != nil {
				t.Errorf("second Validate() = %v, want nil (the node validates again)", cfg.Validate())
			}
		})
	}
}

func TestRedactArgs(t *testing.T) {
	in := []string{"node", "run", "--cluster-key", "K", "--cluster-key-file", "/etc/key", "-cache-password=P",
		"--edge-purge-token", "T", "--Some-SECRET=S", "--name", "n", "--roles=app", "--", "--api-token"}
	want := []string{"node", "run", "--cluster-key", node.Redacted, "--cluster-key-file", node.Redacted, "-cache-password=" + node.Redacted,
		"--edge-purge-token", node.Redacted, "--Some-SECRET=" + node.Redacted, "--name", "n", "--roles=app", "--", "--api-token"}
	if got := node.RedactArgs(in); !slices.Equal(got, want) {
		t.Errorf("RedactArgs(%q) =\n %q, want\n %q", in, got, want)
	}
	if in[3] != "K" {
		t.Errorf("RedactArgs changed its argument")
	}
	gotNames := node.SecretFlagsIn(in[1:])
	wantNames := []string{"cluster-key", "cache-password", "edge-purge-token", "Some-SECRET", "api-token"}
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("SecretFlagsIn = %q, want %q", gotNames, wantNames)
	}
	for _, name := range []string{"cluster-key", "cache-password", "edge-purge-token", "x-secret", "db-passwd"} {
		if !node.IsSecretFlag(name) {
			t.Errorf("IsSecretFlag(%q) = false, want true", name)
		}
	}
	for _, name := range []string{"roles", "name", "sticky-cookie", "admin-addr"} {
		if node.IsSecretFlag(name) {
			t.Errorf("IsSecretFlag(%q) = true, want false", name)
		}
	}
}

// Without a key the admin endpoints stay open (they are on loopback, which
// Validate enforces), as before.
func TestAdminOpenWithoutKey(t *testing.T) {
	tc := testcluster.New(t)
	n := tc.StartWith("open", []string{node.RolePrimary}, func(c *node.Config) { c.NATS = node.NATSOff })
	for _, path := range []string{"/status", "/metrics"} {
		if code, _ := adminGet(t, n, path, ""); code != http.StatusOK {
			t.Errorf("GET %s on a node without a key = %d, want 200", path, code)
		}
	}
	if got, want := n.Addr("admin"), n.AdminAddr(); got != want {
		t.Errorf("announced admin address %q, want the bound %q", got, want)
	}
}
