package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Off loopback a node refuses to open its internal ports without a key,
// naming them and saying how to make one; on loopback it may run without.
func TestValidateSecurity(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA(t)
	files := ca.Files(t.TempDir(), "10.0.0.5")
	for _, tt := range []struct {
		name  string
		mod   func(*node.Config)
		wants []string // nil: valid
	}{
		{"loopback without key", func(c *node.Config) { c.Addr = "127.0.0.2" }, nil},
		{"ipv6 loopback without key", func(c *node.Config) { c.Addr = "::1" }, nil},
		{"private address with key", func(c *node.Config) { c.Addr, c.ClusterKey = "10.0.0.5", key }, nil},
		{"private address without key", func(c *node.Config) { c.Addr = "10.0.0.5" },
			[]string{"10.0.0.5", "./node keygen", "NODE_CLUSTER_KEY", "store", "NATS", "admin", "gossip"}},
		{"cache node without key", func(c *node.Config) {
			c.Addr, c.RoleNames, c.NATS = "192.168.1.20", []string{node.RoleCache}, node.NATSOff
		},
			[]string{"192.168.1.20", "cache", "./node keygen"}},
		{"public address without key", func(c *node.Config) { c.Addr = "203.0.113.7" }, []string{"./node keygen"}},
		{"bad key", func(c *node.Config) { c.ClusterKey = "not base64!" }, []string{"--cluster-key", "./node keygen"}},
		{"short key", func(c *node.Config) { c.ClusterKey = "c2hvcnQ=" }, []string{"--cluster-key"}},
		{"tls files", func(c *node.Config) { c.Addr, c.ClusterKey, c.TLS = "10.0.0.5", key, files }, nil},
		{"tls without ca", func(c *node.Config) { c.TLS = cluster.TLSFiles{Cert: files.Cert, Key: files.Key} }, []string{"--tls-ca"}},
		{"tls cert missing", func(c *node.Config) {
			c.TLS = files
			c.TLS.Cert = filepath.Join(t.TempDir(), "none.pem")
		}, []string{"none.pem"}},
		{"tls ca not pem", func(c *node.Config) {
			c.TLS = files
			c.TLS.CA = files.Key
		}, []string{"CA"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			cfg.RoleNames = []string{node.RolePrimary}
			tt.mod(&cfg)
			err := cfg.Validate()
			if tt.wants == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, node.ErrConfig) {
				t.Fatalf("Validate() = %v, want a configuration error", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Validate() = %q, want one line", err)
			}
		})
	}
}

// With a cluster key, each internal door of a running cluster refuses
// whoever does not present its derived credential, while the nodes' own
// clients present theirs: the store port (401), the cache (NOAUTH), the
// edge's HTTP purge (401); and the blog, a public door, works through
// them, its cache tier included.
func TestClusterKeyGuardsEveryDoor(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := cluster.ParseKey(key)
	wrong, _ := cluster.ParseKey(other)
	keyed := func(c *node.Config) { c.ClusterKey, c.NATS = key, node.NATSOff }
	tc := testcluster.New(t)
	db := tc.StartWith("db-1", []string{node.RolePrimary}, keyed)
	cacheNode := tc.StartWith("cache-1", []string{node.RoleCache}, keyed)
	app := tc.StartWith("app-1", []string{node.RoleApp}, func(c *node.Config) {
		keyed(c)
		c.RoleConfig.App.Cache = "on"
	})
	edge := tc.StartWith("edge-1", []string{node.RoleEdge}, func(c *node.Config) {
		keyed(c)
		c.RoleConfig.Edge.Origin = "http://" + app.Addr("app")
	})
	tc.WaitForMembers(4, 10*time.Second)
	ctx := context.Background()

	// The blog works: sign up and write through the app, whose store
	// client presents the store token.
	appURL := "http://" + app.Addr("app")
	var postID string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		cookie, err := signup(appURL, "ann")
		if err != nil {
			return err
		}
		postID, err = createPost(appURL, cookie)
		return err
	})
	// Read it twice: the second read is a cache hit, so the app's go-redis
	// clients got past AUTH.
	var xcache string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		resp, err := http.Get(appURL + "/api/v1/posts/" + postID)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if xcache = resp.Header.Get("X-App-Cache"); resp.StatusCode != 200 || !strings.Contains(xcache, "HIT") {
			return fmt.Errorf("GET post = %d, X-App-Cache %q, want a hit", resp.StatusCode, xcache)
		}
		return nil
	})

	// Store port: the scan that leaked accounts is refused without the
	// token, and with another key's.
	storeURL := "http://" + db.Addr("store") + "/v1/scan/accounts.users"
	for _, authz := range []string{"", "Bearer " + cluster.DeriveSecret(wrong, cluster.PurposeStore), "Bearer " + cluster.DeriveSecret(raw, cluster.PurposeCache)} {
		code, body := request(t, http.MethodGet, storeURL, authz)
		if code != http.StatusUnauthorized || !strings.Contains(body, "error") || strings.Contains(body, "@") {
			t.Errorf("scan of accounts.users with Authorization %.20q = %d %s, want 401 and no data", authz, code, body)
		}
	}
	if code, body := request(t, http.MethodGet, storeURL, "Bearer "+cluster.DeriveSecret(raw, cluster.PurposeStore)); code != 200 || !strings.Contains(body, "ann") {
		t.Errorf("scan with the store token = %d %.200s, want 200 with ann's record", code, body)
	}
	c := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "db-1", Addr: db.Addr("store"), Primary: true}}})
	defer c.Close()
	if _, err := c.Txn(ctx, store.Put("accounts.users", "ann", []byte(`{"hash":"mine now"}`))); !errors.Is(err, store.ErrUnauthorized) {
		t.Errorf("Txn without the token = %v, want ErrUnauthorized", err)
	}

	// Cache port.
	rdb := func(password string) *redis.Client {
		r := redis.NewClient(&redis.Options{Addr: cacheNode.Addr("cache"), Password: password, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second})
		t.Cleanup(func() { r.Close() })
		return r
	}
	if err := rdb("").Get(ctx, "x").Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
		t.Errorf("GET on the cache without AUTH = %v, want NOAUTH Authentication required.", err)
	}
	if err := rdb(cluster.DeriveSecret(wrong, cluster.PurposeCache)).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("PING with another key's password = %v, want WRONGPASS", err)
	}
	if err := rdb(cluster.DeriveSecret(raw, cluster.PurposeCache)).Ping(ctx).Err(); err != nil {
		t.Errorf("PING with the derived password = %v", err)
	}

	// No node shows the key or a secret on its admin pages.
	secrets := cluster.DeriveSecrets(raw)
	for _, n := range []*node.Node{db, cacheNode, app, edge} {
		for _, page := range []string{"/status", "/metrics"} {
			code, body := request(t, http.MethodGet, "http://"+n.AdminAddr()+page, "Bearer "+secrets.Admin)
			if code != http.StatusOK {
				t.Fatalf("%s of %s = %d, want 200", page, n.Config().Name, code)
			}
			for _, secret := range []string{key, secrets.Store, secrets.Cache, secrets.NATS, secrets.Purge, secrets.Admin} {
				if strings.Contains(body, secret) {
					t.Errorf("%s of %s shows a secret", page, n.Config().Name)
				}
			}
		}
	}

	// Edge purge: on, behind the derived token.
	purgeURL := "http://" + edge.Addr("edge") + "/_edge/purge"
	if code, body := requestBody(t, http.MethodPost, purgeURL, "", `{"all":true}`); code != http.StatusUnauthorized {
		t.Errorf("purge without the token = %d %s, want 401", code, body)
	}
	if code, body := requestBody(t, http.MethodPost, purgeURL, "Bearer "+cluster.DeriveSecret(wrong, cluster.PurposePurge), `{"all":true}`); code != http.StatusUnauthorized {
		t.Errorf("purge with another key's token = %d %s, want 401", code, body)
	}
	if code, body := requestBody(t, http.MethodPost, purgeURL, "Bearer "+cluster.DeriveSecret(raw, cluster.PurposePurge), `{"all":true}`); code != http.StatusOK {
		t.Errorf("purge with the derived token = %d %s, want 200", code, body)
	}
}

// With --tls-*, the store, cache and NATS ports speak TLS only, NATS
// routes too, and the nodes' clients, which verify them against the CA,
// work through them: the replica streams, the app's store client and cache
// tier, and the worker (ready only once it consumes jobs over NATS).
func TestClusterTLS(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA(t)
	dir := t.TempDir()
	withTLS := func(c *node.Config) {
		d := filepath.Join(dir, c.Name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		c.ClusterKey, c.TLS = key, ca.Files(d, c.Addr)
	}
	tc := testcluster.New(t)
	db := tc.StartWith("db-1", []string{node.RolePrimary}, withTLS)
	tc.StartWith("db-2", []string{node.RoleReplica}, withTLS)
	cacheNode := tc.StartWith("cache-1", []string{node.RoleCache}, withTLS)
	app := tc.StartWith("app-1", []string{node.RoleApp}, func(c *node.Config) {
		withTLS(c)
		c.RoleConfig.App.Cache = "on"
	})
	tc.StartWith("worker-1", []string{node.RoleWorker}, withTLS)
	tc.WaitForMembers(5, 10*time.Second)
	appURL := "http://" + app.Addr("app")
	var postID string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		cookie, err := signup(appURL, "bea")
		if err != nil {
			return err
		}
		postID, err = createPost(appURL, cookie)
		return err
	})
	testwait.RetryUntil(t, 10*time.Second, func() error {
		resp, err := http.Get(appURL + "/api/v1/posts/" + postID)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if x := resp.Header.Get("X-App-Cache"); resp.StatusCode != 200 || !strings.Contains(x, "HIT") {
			return fmt.Errorf("GET post = %d, X-App-Cache %q, want a hit", resp.StatusCode, x)
		}
		return nil
	})
	// The replica streams over TLS.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		return replicaCaughtUp(tc.Node("db-1"), tc.Node("db-2"))
	})
	// Plain HTTP and plain RESP get nothing.
	raw, _ := cluster.ParseKey(key)
	if code, body := request(t, http.MethodGet, "http://"+db.Addr("store")+"/v1/status", "Bearer "+cluster.DeriveSecret(raw, cluster.PurposeStore)); code == http.StatusOK {
		t.Errorf("plain http to the TLS store port = %d %.100s, want a refusal", code, body)
	}
	r := redis.NewClient(&redis.Options{Addr: cacheNode.Addr("cache"), Password: cluster.DeriveSecret(raw, cluster.PurposeCache), Protocol: 2, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer r.Close()
	if err := r.Ping(context.Background()).Err(); err == nil {
		t.Errorf("plain RESP PING to the TLS cache port succeeded")
	}
	natsURL := "nats://" + db.Addr("nats")
	password := nats.UserInfo(queue.AuthUser, cluster.DeriveSecret(raw, cluster.PurposeNATS))
	if nc, err := nats.Connect(natsURL, password, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("a NATS client without TLS connected to the TLS port")
	}
	nc, err := nats.Connect(natsURL, password, nats.Secure(&tls.Config{RootCAs: ca.Pool()}), nats.Timeout(2*time.Second))
	if err != nil {
		t.Fatalf("NATS over TLS with the CA and the password: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Errorf("NATS connection over TLS: TLSRequired() = false")
	}
}

// replicaCaughtUp compares the LSNs the two nodes' stores report.
func replicaCaughtUp(primary, replica *node.Node) error {
	p, r := storeLSN(primary), storeLSN(replica)
	if p == 0 || r != p {
		return fmt.Errorf("primary at LSN %d, replica at %d", p, r)
	}
	return nil
}

func storeLSN(n *node.Node) uint64 {
	st, _ := n.Status().Sections["store"].(server.Status)
	return st.LSN
}

func request(t *testing.T, method, url, authz string) (int, string) {
	t.Helper()
	return requestBody(t, method, url, authz, "")
}

func requestBody(t *testing.T, method, url, authz, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// signup creates an account through the blog's API and returns its
// session cookie.
func signup(appURL, handle string) (*http.Cookie, error) {
	body := fmt.Sprintf(`{"handle":%q,"email":"%s@example.com","password":"a long password"}`, handle, handle)
	req, _ := http.NewRequest(http.MethodPost, appURL+"/api/v1/signup", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("signup %s = %d %s", handle, resp.StatusCode, b)
	}
	for _, c := range resp.Cookies() {
		return c, nil
	}
	return nil, fmt.Errorf("signup %s set no cookie", handle)
}

// createPost writes a published post and returns its id.
func createPost(appURL string, cookie *http.Cookie) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, appURL+"/api/v1/posts", bytes.NewReader([]byte(`{"title":"Keys","body":"One key, every door."}`)))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create post = %d %s", resp.StatusCode, b)
	}
	var id string
	if i := strings.Index(string(b), `"id":`); i >= 0 {
		rest := strings.TrimLeft(string(b[i+5:]), ` "`)
		id = rest[:strings.IndexAny(rest, `",}`)]
	}
	if id == "" {
		return "", fmt.Errorf("create post: no id in %s", b)
	}
	return id, nil
}
