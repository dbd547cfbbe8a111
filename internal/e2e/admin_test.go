package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/nodebin"
	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
)

// A node process with a cluster key: secrets given on its command line are
// warned about and redacted from /debug/pprof/cmdline, a secret can come
// from the file NODE_<FLAG>_FILE names, and the status command reads /status
// only with the key, from a file or the environment (issue 15, item 2).
func TestAdminSecretsOfAProcess(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	pwFile := filepath.Join(dir, "cache.pw")
	const password, purgeToken = "cache-pw-from-a-file", "purge-token-on-the-command-line"
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)

	flags, admin, _, _ := ports(t, "127.0.0.1")
	cachePorts, err := testcluster.FreePorts("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	args := append(flags, "--roles", "cache", "--name", "keyed-cache", "--data", filepath.Join(dir, "data"),
		"--cache-port", fmt.Sprint(cachePorts[0]), "--cluster-key", key, "--edge-purge-token="+purgeToken)
	p := startNodeEnv(t, []string{"NODE_CACHE_PASSWORD_FILE=" + pwFile}, args...)
	waitReady(t, admin)

	for _, flag := range []string{"--cluster-key on the command line", "--edge-purge-token on the command line"} {
		if !strings.Contains(p.stderr.String(), "warning: "+flag) {
			t.Errorf("stderr has no warning about %s:\n%s", flag, tail(p.stderr.String(), 10))
		}
	}

	// The cache's password came from the file.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cachePorts[0]), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "AUTH %s\r\nPING\r\n", password)
	br := bufio.NewReader(c)
	for _, want := range []string{"+OK\r\n", "+PONG\r\n"} {
		if line, err := br.ReadString('\n'); line != want {
			t.Fatalf("cache reply %q, %v; want %q (password from NODE_CACHE_PASSWORD_FILE)", line, err, want)
		}
	}

	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /status without the token = %d, want 401", resp.StatusCode)
	}
	token, _ := node.AdminToken(key)
	req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/debug/pprof/cmdline", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cmdline, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(cmdline), key) || strings.Contains(string(cmdline), purgeToken) ||
		!strings.Contains(string(cmdline), "--cluster-key\x00"+node.Redacted) || !strings.Contains(string(cmdline), "--edge-purge-token="+node.Redacted) {
		t.Errorf("/debug/pprof/cmdline = %d %q, want 200 with the key and the token redacted", resp.StatusCode, cmdline)
	}

	status := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(nodebin.Build(t), append([]string{"status", "--admin", admin}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := status(nil); err == nil || !strings.Contains(out, "--cluster-key-file") {
		t.Errorf("status without the key: %v\n%s\nwant a failure that says to give the key", err, out)
	}
	if out, err := status(nil, "--cluster-key", "AAAAAAAAAAAAAAAAAAAAAA=="); err == nil || !strings.Contains(out, "another key") {
		t.Errorf("status with another key: %v\n%s\nwant a failure that says the key differs", err, out)
	}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
	}{
		{"--cluster-key-file", nil, []string{"--cluster-key-file", keyFile}},
		{"NODE_CLUSTER_KEY_FILE", []string{"NODE_CLUSTER_KEY_FILE=" + keyFile}, nil},
		{"NODE_CLUSTER_KEY", []string{"NODE_CLUSTER_KEY=" + key}, nil},
	} {
		if out, err := status(tt.env, tt.args...); err != nil || !strings.Contains(out, "keyed-cache") {
			t.Errorf("status with the key from %s: %v\n%s", tt.name, err, out)
		}
	}
}
