package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/nodebin"
	"github.com/scalestack/scalestack/internal/testcluster"
)

// A cluster started with a key from `node keygen`, given in the
// environment: the store port refuses what curl would send without the
// store token (the scan that leaked accounts, a PUT, the snapshot,
// promote) and serves it with the token `node secret store` prints; the
// cache answers NOAUTH; the blog, a public door, works through both;
// `node promote` presents the token.
func TestClusterKeyClosesInternalPorts(t *testing.T) {
	out, err := exec.Command(nodebin.Build(t), "keygen").Output()
	if err != nil {
		t.Fatalf("node keygen: %v", err)
	}
	env := []string{"NODE_CLUSTER_KEY=" + strings.TrimSpace(string(out))}

	dbFlags, dbAdmin, storeAddr, _ := ports(t, "127.0.0.1")
	startNodeEnv(t, env, append([]string{"--roles", "primary", "--name", "db-1", "--data", t.TempDir()}, dbFlags...)...)
	waitReady(t, dbAdmin)
	gossip := "127.0.0.1:" + flagValue(dbFlags, "--gossip-port")

	cacheFlags, cacheAdmin, _, _ := ports(t, "127.0.0.1")
	cp, err := testcluster.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	cacheAddr := fmt.Sprintf("127.0.0.1:%d", cp[0])
	startNodeEnv(t, env, append([]string{"--roles", "cache", "--name", "cache-1", "--data", t.TempDir(), "--join", gossip, "--cache-port", fmt.Sprint(cp[0])}, cacheFlags...)...)
	waitReady(t, cacheAdmin)

	appFlags, appAdmin, _, appAddr := ports(t, "127.0.0.1")
	startNodeEnv(t, env, append([]string{"--roles", "app", "--name", "app-1", "--data", t.TempDir(), "--join", gossip, "--bcrypt-cost", "4", "--cache", "on"}, appFlags...)...)
	waitReady(t, appAdmin)

	// The blog works.
	ann := newUser(t, "http://"+appAddr)
	ann.must(201, "POST", "/api/v1/signup", map[string]string{"handle": "ann", "email": "ann@example.com", "password": "correct horse"}, nil)
	var created struct{ Post apiPost }
	ann.must(201, "POST", "/api/v1/posts", map[string]any{"title": "Doors", "body": "One key, every door.", "published": true}, &created)
	var got struct{ Post apiPost }
	ann.must(200, "GET", "/api/v1/posts/"+created.Post.ID, nil, &got)
	if got.Post.Title != "Doors" {
		t.Fatalf("post = %+v, want Doors", got.Post)
	}

	// The store port, as curl would try it.
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/scan/accounts.users"},
		{"PUT", "/v1/kv/accounts.users/ann"},
		{"GET", "/v1/snapshot"},
		{"POST", "/v1/promote"},
		{"POST", "/v1/handover?to=mallory"},
		{"GET", "/v1/status"},
	} {
		code, h, body := curl(t, r.method, "http://"+storeAddr+r.path, "", `{"hash":"mine now"}`)
		if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || strings.Contains(body, "ann@example.com") {
			t.Errorf("curl -X %s %s = %d (WWW-Authenticate %q) %.200s, want 401 Bearer and no data", r.method, r.path, code, h.Get("WWW-Authenticate"), body)
		}
	}
	tokenOut, err := secretCmd(t, env, "store").Output()
	if err != nil {
		t.Fatalf("node secret store: %v", err)
	}
	token := strings.TrimSpace(string(tokenOut))
	if code, _, body := curl(t, "GET", "http://"+storeAddr+"/v1/scan/accounts.users", token, ""); code != 200 || !strings.Contains(body, "ann@example.com") {
		t.Errorf("scan with the token of node secret store = %d %.200s, want 200 with ann's record", code, body)
	}

	// The cache wants the derived password.
	conn, err := net.DialTimeout("tcp", cacheAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET ss1:anything\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if line != "-NOAUTH Authentication required.\r\n" {
		t.Errorf("cache GET without AUTH = %q, want -NOAUTH Authentication required.", line)
	}

	// node promote presents the token: the store refuses a promotion
	// because it runs without --failover, not because of the credential.
	var stderr bytes.Buffer
	cmd := exec.Command(nodebin.Build(t), "promote", "--admin", dbAdmin, "db-1")
	cmd.Env, cmd.Stderr = append(os.Environ(), env...), &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "without --failover") {
		t.Errorf("node promote with the key: %v, %q; want the store's refusal for lack of --failover", err, stderr.String())
	}
	stderr.Reset()
	cmd = exec.Command(nodebin.Build(t), "promote", "--admin", dbAdmin, "db-1")
	cmd.Env, cmd.Stderr = withoutKey(os.Environ()), &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "NODE_CLUSTER_KEY") {
		t.Errorf("node promote without the key: %v, %q; want a refusal naming NODE_CLUSTER_KEY", err, stderr.String())
	}
}

// curl sends one request with a bearer token ("" sends none).
func curl(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header, string(b)
}

func secretCmd(t testing.TB, env []string, purpose string) *exec.Cmd {
	cmd := exec.Command(nodebin.Build(t), "secret", purpose)
	cmd.Env = append(withoutKey(os.Environ()), env...)
	return cmd
}

// withoutKey drops NODE_CLUSTER_KEY from an environment.
func withoutKey(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NODE_CLUSTER_KEY=") {
			out = append(out, kv)
		}
	}
	return out
}
