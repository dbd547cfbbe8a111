package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
)

// The test binary is also a node: started with SCALESTACK_TEST_NODE=1 it
// runs its arguments as the node command would, so a test can run a real
// node whose command line names it (--name NAME), as the fault commands
// check before they trust a pid.
func TestMain(m *testing.M) {
	switch os.Getenv("SCALESTACK_TEST_NODE") {
	case "run":
		err := dispatch(os.Args[1:], os.Stdout, os.Stderr)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
		}
		os.Exit(exitCode(err))
	case "idle": // a process that looks like a node and does nothing
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

// startProcess runs this test binary in mode with args and returns its
// pid; the test's end kills it.
func startProcess(t *testing.T, mode string, args ...string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SCALESTACK_TEST_NODE="+mode)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("output of %s:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return cmd.Process.Pid
}

// writeStack writes DIR/cluster.json as node up would, for nodes.
func writeStack(t *testing.T, dir string, nodes ...launch.Node) {
	t.Helper()
	st := launch.State{Stage: 2, Title: "separate database", Dir: dir, Binary: filepath.Join(dir, "bin", "node"), Nodes: nodes}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, launch.StateFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// storeNode is a planned primary on addr with the standard ports.
func storeNode(name, addr string, pid int) launch.Node {
	return launch.Node{
		Name: name, Roles: []string{"primary"}, Addr: addr,
		Ports: map[string]int{"store": 7070, "nats": 4222, "admin": 9090, "gossip": 7946},
		Admin: addr + ":9090", PID: pid, Running: pid != 0,
	}
}

func appNode(name, addr string, pid int) launch.Node {
	return launch.Node{
		Name: name, Roles: []string{"app"}, Addr: addr,
		Ports: map[string]int{"app": 8081, "admin": 9090, "gossip": 7946},
		Admin: addr + ":9090", PID: pid, Running: pid != 0,
	}
}

// findStack reads cluster.json and keeps the running nodes only: the
// admin address of a store node before any other, the NATS address of
// every running store node.
func TestFindStack(t *testing.T) {
	dir := t.TempDir()
	app := startProcess(t, "idle", "run", "--name", "app-1")
	db2 := startProcess(t, "idle", "run", "--name", "db-2")
	writeStack(t, dir,
		appNode("app-1", "127.0.41.30", app),         // running, but not a store node
		storeNode("db-1", "127.0.41.2", 0),           // never started
		storeNode("db-3", "127.0.41.4", 999999),      // its pid is not its process
		storeNode("db-2", "127.0.41.3", db2),         // running
		appNode("app-2", "127.0.41.31", os.Getpid()), // a pid that is not a node
	)
	got, err := findStack(dir, "--admin HOST:PORT")
	if err != nil {
		t.Fatal(err)
	}
	want := stackAddrs{Admin: "127.0.41.3:9090", AdminOf: "db-2", NATS: []string{"127.0.41.3:4222"}}
	if got.Admin != want.Admin || got.AdminOf != want.AdminOf || !slices.Equal(got.NATS, want.NATS) {
		t.Errorf("findStack = %+v, want %+v", got, want)
	}

	// Without a running store node, any running node's admin, and no NATS.
	writeStack(t, dir, appNode("app-1", "127.0.41.30", app), storeNode("db-1", "127.0.41.2", 0))
	if got, err := findStack(dir, "--admin HOST:PORT"); err != nil || got.Admin != "127.0.41.30:9090" {
		t.Errorf("findStack with only app-1 running = %+v, %v; want app-1's admin", got, err)
	}
	if _, err := natsAddrs("", dir); err == nil || !strings.Contains(err.Error(), "no store node") {
		t.Errorf("natsAddrs with no store node running = %v, want an error saying so", err)
	}
	// The flags win over the stack.
	if got, err := natsAddrs("10.0.0.2:4222,10.0.0.3:4222", dir); err != nil || !slices.Equal(got, []string{"10.0.0.2:4222", "10.0.0.3:4222"}) {
		t.Errorf("natsAddrs(--nats) = %v, %v", got, err)
	}
	if got, err := adminAddr("10.0.0.2:9090", t.TempDir()); err != nil || got != "10.0.0.2:9090" {
		t.Errorf("adminAddr(--admin) with no stack = %q, %v", got, err)
	}

	// Nothing running: say so, and how to see why.
	writeStack(t, dir, storeNode("db-1", "127.0.41.2", 0))
	if _, err := findStack(dir, "--admin HOST:PORT"); err == nil || !strings.Contains(err.Error(), "no node of the stack") {
		t.Errorf("findStack with nothing running = %v, want an error saying so", err)
	}

	// No stack and no flag: both ways are named, as a usage error.
	for _, flag := range []string{"--admin HOST:PORT", "--nats HOST:PORT"} {
		_, err := findStack(t.TempDir(), flag)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--dir") || !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), progName()+" up") {
			t.Errorf("findStack of an empty directory = %v, want a usage error naming --dir, %s and %s up", err, flag, progName())
		}
	}
}

// status, promote and jobs find a real node through --dir alone.
func TestCommandsFindTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	dir := t.TempDir()
	const addr = "127.0.41.12"
	pid := startProcess(t, "run", "run", "--roles", "primary", "--name", "db-1", "--addr", addr,
		"--data", filepath.Join(dir, "data"), "--join", addr+":7946", "--log-level", "warn")
	writeStack(t, dir, storeNode("db-1", addr, pid))
	testwait.RetryUntil(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + ":9090/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})

	var stdout, stderr bytes.Buffer
	if err := dispatch([]string{"status", "--dir", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("status --dir: %v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "seen from db-1 (primary)") {
		t.Errorf("status --dir printed:\n%s\nwant the cluster seen from db-1", stdout.String())
	}

	// jobs connects to the NATS server inside db-1. (A lone store node's
	// JetStream may not serve the job streams, which takes three store
	// nodes from stage 4 on: the connection is what this test is about.)
	err := dispatch([]string{"jobs", "stats", "--dir", dir, "--interval", "10ms"}, &stdout, &stderr)
	if err != nil && strings.Contains(err.Error(), "no NATS server") {
		t.Errorf("jobs stats --dir: %v, want it connected to db-1's NATS server", err)
	}

	// promote reaches the store node, which answers for itself: this
	// primary runs without --store-failover.
	err = dispatch([]string{"promote", "--dir", dir, "db-1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "promote db-1: promote: this store runs without --store-failover") || strings.Contains(err.Error(), "{") {
		t.Errorf("promote --dir db-1 = %v, want the store's refusal as plain text", err)
	}
}

// promote prints one line, whatever the store node answers.
func TestPromoteResult(t *testing.T) {
	for _, tt := range []struct {
		body, want string
	}{
		{`{"primary":"replica-1","epoch":3,"from":"db-1"}` + "\n",
			"replica-1 is the primary at epoch 3 after 412ms; db-1 handed over and follows it"},
		{`{"primary":"db-1","epoch":4}`, "db-1 is already the primary, at epoch 4"},
	} {
		got, err := promoteResult([]byte(tt.body), 412*time.Millisecond+300*time.Microsecond)
		if err != nil || got != tt.want {
			t.Errorf("promoteResult(%s) = %q, %v, want %q", tt.body, got, err, tt.want)
		}
	}
	if _, err := promoteResult([]byte("<html>"), time.Second); err == nil {
		t.Error("promoteResult of a non-JSON answer: no error")
	}
	if got, want := wireError([]byte(`{"error":"promote: no primary known to hand over from: unavailable"}`+"\n")),
		"promote: no primary known to hand over from: unavailable"; got != want {
		t.Errorf("wireError = %q, want %q", got, want)
	}
}

// The examples are written with "node" as the program; they print the
// name the program was called by.
func TestNamed(t *testing.T) {
	prog := progName()
	in := "  node up --stage 2   # a stage\n" +
		"  node\n" +
		"  NODE_CLUSTER_KEY=$KEY node promote db-2\n" +
		"  (umask 077; node keygen > cluster.key)\n" +
		"  curl -H \"Authorization: Bearer $(node secret store)\" host\n" +
		"  .scalestack/bin/node ps\n" +
		"  # then one more app node joins\n"
	want := "  " + prog + " up --stage 2   # a stage\n" +
		"  " + prog + "\n" +
		"  NODE_CLUSTER_KEY=$KEY " + prog + " promote db-2\n" +
		"  (umask 077; " + prog + " keygen > cluster.key)\n" +
		"  curl -H \"Authorization: Bearer $(" + prog + " secret store)\" host\n" +
		"  .scalestack/bin/node ps\n" +
		"  # then one more app node joins\n"
	if got := named(in); got != want {
		t.Errorf("named:\n%s\nwant:\n%s", got, want)
	}
}
