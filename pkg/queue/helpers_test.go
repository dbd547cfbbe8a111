package queue_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// The test binary doubles as a helper process that runs one server, so that
// tests can SIGKILL a server: a crash that an in-process Shutdown cannot
// imitate. The parent passes the config in the environment and reads the
// server's URLs from the child's stdout.
const (
	childEnv       = "QUEUE_TEST_CHILD"
	childNameEnv   = "QUEUE_TEST_CHILD_NAME"
	childHostEnv   = "QUEUE_TEST_CHILD_HOST"
	childDirEnv    = "QUEUE_TEST_CHILD_DIR"
	childRoutesEnv = "QUEUE_TEST_CHILD_ROUTES"
	childPortEnv   = "QUEUE_TEST_CHILD_CLUSTER_PORT"
	childAloneEnv  = "QUEUE_TEST_CHILD_STANDALONE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "1":
		runChild()
		return
	case "idle":
		runIdleChild()
		return
	}
	os.Exit(m.Run())
}

// runChild runs one server until it is killed or its stdin closes (the
// parent died), printing "client <url>" and "cluster <url>" once it is up.
func runChild() {
	cfg := natsserver.DefaultServerConfig()
	cfg.Name = os.Getenv(childNameEnv)
	cfg.Host = os.Getenv(childHostEnv)
	cfg.DataDir = os.Getenv(childDirEnv)
	cfg.ClientPort = 0
	cfg.ClusterPort = 0
	if p := os.Getenv(childPortEnv); p != "" {
		fmt.Sscan(p, &cfg.ClusterPort)
	}
	cfg.Standalone = os.Getenv(childAloneEnv) == "1"
	if r := os.Getenv(childRoutesEnv); r != "" {
		cfg.Routes = strings.Split(r, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := natsserver.NewServer(cfg)
	if err == nil {
		err = s.Open()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	// Exactly two lines; the parent reads both.
	fmt.Printf("client %s\ncluster %s\n", s.ClientURL(), s.ClusterURL())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
	s.Close()
}

// runIdleChild is a helper process without a server, the baseline of the
// RSS measurement: it prints two lines and waits like runChild.
func runIdleChild() {
	fmt.Printf("client -\ncluster -\n")
	io.Copy(io.Discard, os.Stdin)
}

// child is a server running in a helper process.
type child struct {
	cmd        *exec.Cmd
	stdin      io.Closer // held so that it is not collected and closed
	clientURL  string
	clusterURL string
}

// childConfig describes a server to run in a helper process.
type childConfig struct {
	name, host, dir string
	clusterPort     int // 0 picks a free one
	routes          []string
	standalone      bool
	idle            bool // run no server at all (RSS baseline)
}

// startChild starts a server in a helper process and waits until it is up.
func startChild(t testing.TB, cc childConfig) *child {
	t.Helper()
	name := cc.name
	alone := "0"
	if cc.standalone {
		alone = "1"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	mode := "1"
	if cc.idle {
		mode = "idle"
	}
	cmd.Env = append(os.Environ(),
		childEnv+"="+mode,
		childNameEnv+"="+cc.name,
		childHostEnv+"="+cc.host,
		childDirEnv+"="+cc.dir,
		childRoutesEnv+"="+strings.Join(cc.routes, ","),
		fmt.Sprintf("%s=%d", childPortEnv, cc.clusterPort),
		childAloneEnv+"="+alone,
	)
	cmd.Stderr = os.Stderr
	// Keep stdin open; the child exits when it closes, so a crashed test
	// does not leave servers behind.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %s: %v", name, err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { c.kill() })
	sc := bufio.NewScanner(out)
	for seen := 0; seen < 2; seen++ {
		if !sc.Scan() {
			t.Fatalf("child %s exited before it was up: %v", name, sc.Err())
		}
		if u, ok := strings.CutPrefix(sc.Text(), "client "); ok {
			c.clientURL = u
		}
		if u, ok := strings.CutPrefix(sc.Text(), "cluster "); ok {
			c.clusterURL = u
		}
	}
	go io.Copy(io.Discard, out)
	return c
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// testLogger returns a logger writing to t.Log until the test ends;
// nats-server goroutines may log a line after their server is closed.
func testLogger(t testing.TB, name string) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// serverConfig returns a config for a server on host with free ports and
// its own data directory.
func serverConfig(t testing.TB, name, host string, routes ...string) natsserver.ServerConfig {
	t.Helper()
	cfg := natsserver.DefaultServerConfig()
	cfg.Name = name
	cfg.Host = host
	cfg.ClientPort = 0
	cfg.ClusterPort = 0
	cfg.DataDir = t.TempDir()
	cfg.Routes = routes
	cfg.Logger = testLogger(t, name)
	return cfg
}

// mustOpen creates and opens a server and closes it when the test ends.
func mustOpen(t testing.TB, cfg natsserver.ServerConfig) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Open(); err != nil {
		t.Fatalf("Open %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mustConnect connects a client to the servers servers returns and closes
// it when the test ends; mods may change its configuration first.
func mustConnect(t testing.TB, name string, servers func() []string, mods ...func(*queue.ClientConfig)) *queue.Conn {
	t.Helper()
	cfg := queue.DefaultClientConfig()
	cfg.Name = name
	cfg.Servers = servers
	cfg.Logger = testLogger(t, name)
	for _, mod := range mods {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := queue.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func staticServers(urls ...string) func() []string {
	return func() []string { return urls }
}

// waitCluster waits until every server sees all of them and they agree on
// a JetStream meta leader.
func waitCluster(t testing.TB, servers ...*natsserver.Server) {
	t.Helper()
	testwait.RetryUntil(t, 20*time.Second, func() error { // cluster forms
		leader := ""
		for i, s := range servers {
			if got := s.ClusterSize(); got != len(servers) {
				return fmt.Errorf("server %d sees cluster size %d, want %d", i, got, len(servers))
			}
			l := s.MetaLeader()
			if l == "" {
				return fmt.Errorf("server %d has no meta leader", i)
			}
			if leader != "" && l != leader {
				return fmt.Errorf("servers disagree on meta leader: %q and %q", leader, l)
			}
			leader = l
		}
		return nil
	})
}

// publish publishes one message, retrying while the stream has no leader
// (an election after a server left), and returns the stored sequence.
func publish(t testing.TB, js jetstream.JetStream, subject, data string, timeout time.Duration) uint64 {
	t.Helper()
	var seq uint64
	testwait.RetryUntil(t, timeout, func() error { // data published
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ack, err := js.Publish(ctx, subject, []byte(data), jetstream.WithMsgID(data))
		if err != nil {
			return err
		}
		seq = ack.Sequence
		return nil
	})
	return seq
}

// streamMessages returns the payloads of every message in the stream, in
// order, read straight from the stream (no consumer state involved).
func streamMessages(t testing.TB, js jetstream.JetStream, stream string) []string {
	t.Helper()
	var got []string
	testwait.RetryUntil(t, 20*time.Second, func() error { // stream read
		// Short contexts per attempt: a stream request during an election
		// goes unanswered until its context ends.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got = nil
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, ierr := s.Info(ctx)
		if ierr != nil {
			return ierr
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, gerr := s.GetMsg(ctx, seq)
			if errors.Is(gerr, jetstream.ErrMsgNotFound) {
				continue
			}
			if gerr != nil {
				return gerr
			}
			got = append(got, string(m.Data))
		}
		return nil
	})
	return got
}
