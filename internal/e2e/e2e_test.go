// Package e2e_test runs the node binary as real processes: bad command
// lines, SIGKILL of a store under concurrent writers, and the stage-2 blog.
package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/nodebin"
	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store"
)

// proc is one node process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncbuf.Buffer
	done   chan struct{} // closed when the process has exited
}

// startNode runs `node run args...` and stops it with SIGKILL at cleanup.
func startNode(t *testing.T, args ...string) *proc {
	t.Helper()
	return startNodeEnv(t, nil, args...)
}

// startNodeEnv is startNode with variables added to the environment.
func startNodeEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(nodebin.Build(t), append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, cmd)
}

// startCmd starts cmd (the node binary, maybe inside a network namespace)
// and stops it with SIGKILL at cleanup.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of %v:\n%s", cmd.Args, tail(p.stderr.String(), 30))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls the node's /readyz.
func waitReady(t *testing.T, adminAddr string) {
	t.Helper()
	testwait.RetryUntil(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
}

// ports returns node run flags with free ports on addr, and the admin and
// store addresses.
func ports(t *testing.T, addr string) (flags []string, admin, storeAddr, app string) {
	t.Helper()
	ps, err := testcluster.FreePorts(addr, 6)
	if err != nil {
		t.Fatal(err)
	}
	flags = []string{"--addr", addr,
		"--gossip-port", fmt.Sprint(ps[0]), "--admin-port", fmt.Sprint(ps[1]), "--store-port", fmt.Sprint(ps[2]),
		"--nats-port", fmt.Sprint(ps[3]), "--nats-cluster-port", fmt.Sprint(ps[4]), "--app-port", fmt.Sprint(ps[5])}
	return flags, fmt.Sprintf("%s:%d", addr, ps[1]), fmt.Sprintf("%s:%d", addr, ps[2]), fmt.Sprintf("%s:%d", addr, ps[5])
}

// Bad command lines get one clear line and exit status 2.
func TestBadCommandLines(t *testing.T) {
	testKey, err := cluster.GenerateKey() // gets a command line past the key check
	if err != nil {
		t.Fatal(err)
	}
	unreadable := t.TempDir()
	blocker := filepath.Join(unreadable, "file")
	os.WriteFile(blocker, []byte("x"), 0o644)
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{"unknown role", []string{"run", "--roles", "database"}, nil, `unknown role "database"`},
		{"bad address", []string{"run", "--roles", "primary", "--addr", "localhost"}, nil, `--addr (NODE_ADDR): "localhost" is not an IP address`},
		{"bad lever", []string{"run", "--roles", "app", "--jobs", "later"}, nil, `--jobs (NODE_JOBS): "later": want inline or queue`},
		{"bad role setting", []string{"run", "--roles", "lb", "--lb-retries", "-1"}, nil, "--lb-retries (NODE_LB_RETRIES): -1 is negative"},
		{"bad env setting", []string{"run", "--roles", "cache"}, []string{"NODE_CACHE_SHARDS=0"}, "--cache-shards (NODE_CACHE_SHARDS): 0: want 1..65536"},
		{"address not on this machine", []string{"run", "--roles", "primary", "--addr", "192.0.2.1", "--data", t.TempDir()}, []string{"NODE_CLUSTER_KEY=" + testKey}, "not on this machine"},
		{"data dir is a file", []string{"run", "--roles", "primary", "--addr", "127.0.0.1", "--data", filepath.Join(blocker, "sub")}, nil, "--data"},
		{"unknown flag", []string{"run", "--rolez", "app"}, nil, "flag provided but not defined"},
		{"bad env value", []string{"run"}, []string{"NODE_ROLES=primary", "NODE_GOSSIP_PORT=abc"}, "NODE_GOSSIP_PORT"},
		{"env role", []string{"run"}, []string{"NODE_ROLES=mainframe"}, `unknown role "mainframe"`},
		{"non-loopback without key", []string{"run", "--roles", "primary", "--addr", "10.255.255.254"}, nil, "./node keygen"},
		{"bad key", []string{"run", "--roles", "primary"}, []string{"NODE_CLUSTER_KEY=short"}, "--cluster-key"},
		{"half the tls files", []string{"run", "--roles", "primary", "--tls-cert", "x.pem"}, nil, "--tls-ca"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(nodebin.Build(t), tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("node %v: %v, want exit status 2; stderr:\n%s", tt.args, err, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("node %v said %q, want it to mention %q", tt.args, msg, tt.want)
			}
			if strings.Count(msg, "\n") > 0 {
				t.Fatalf("node %v said %d lines, want one:\n%s", tt.args, strings.Count(msg, "\n")+1, msg)
			}
		})
	}
}

// A port in use: exit 2, the flag to change is named, and nothing was
// left half-started (the node's other ports are free again).
func TestPortInUseExits2(t *testing.T) {
	flags, admin, storeAddr, _ := ports(t, "127.0.0.1")
	holder := startNode(t, append([]string{"--roles", "primary", "--nats", "off", "--name", "holder", "--data", t.TempDir()}, flags...)...)
	waitReady(t, admin)
	_ = holder

	flags2, _, _, _ := ports(t, "127.0.0.1")
	// Same store port as the holder, everything else free.
	for i := range flags2 {
		if flags2[i] == "--store-port" {
			flags2[i+1] = strings.Split(storeAddr, ":")[1]
		}
	}
	cmd := exec.Command(nodebin.Build(t), append([]string{"run", "--roles", "primary", "--nats", "off", "--name", "second", "--data", t.TempDir()}, flags2...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "--store-port") {
		t.Fatalf("second node on a used port: %v, stderr %q; want exit 2 naming --store-port", err, stderr.String())
	}
}

// Every transaction the store acknowledged survives kill -9 of the node
// process, over several rounds under concurrent writers.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	data := t.TempDir()
	flags, admin, storeAddr, _ := ports(t, "127.0.0.1")
	args := append([]string{"--roles", "primary", "--nats", "off", "--name", "db", "--data", data}, flags...)
	client := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "db", Addr: storeAddr, Primary: true}}, Timeout: 2 * time.Second})
	defer client.Close()

	acked := map[string]string{}
	var mu sync.Mutex
	for round := range 4 {
		p := startNode(t, args...)
		waitReady(t, admin)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					key := fmt.Sprintf("r%d-w%d-%05d", round, w, i)
					val := fmt.Sprintf("value of %s", key)
					if _, err := client.Txn(ctx, store.Put("acked", key, []byte(val)), store.Put("pairs", key, []byte(val))); err == nil {
						mu.Lock()
						acked[key] = val
						mu.Unlock()
					}
				}
			}()
		}
		testwait.RetryUntil(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < (round+1)*200 {
				return fmt.Errorf("%d writes acknowledged so far", len(acked))
			}
			return nil
		})
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		cancel()
		wg.Wait()
	}
	startNode(t, args...)
	waitReady(t, admin)
	ctx := context.Background()
	for key, want := range acked {
		for _, b := range []string{"acked", "pairs"} {
			got, err := client.Get(ctx, b, key)
			if err != nil || string(got) != want {
				t.Fatalf("after kill -9: Get(%s, %s) = %q, %v; want %q (acknowledged)", b, key, got, err, want)
			}
		}
	}
	t.Logf("%d acknowledged transactions over 4 kill -9 rounds, all read back", len(acked))
}
