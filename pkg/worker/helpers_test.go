package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
	"github.com/scalestack/scalestack/pkg/worker"
)

// The test binary doubles as a worker process, so that a test can SIGKILL
// a worker in the middle of its jobs. The parent passes the NATS URL, the
// store address and the outbox in the environment.
const (
	childEnv       = "WORKER_TEST_CHILD"
	childNATSEnv   = "WORKER_TEST_NATS"
	childStoreEnv  = "WORKER_TEST_STORE"
	childOutboxEnv = "WORKER_TEST_OUTBOX"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

// runChild runs a worker until it is killed or its stdin closes. It
// gathers views for an hour, so that the view jobs it took are all still
// unanswered when it is killed.
func runChild() {
	cfg := testConfig(os.Getenv(childOutboxEnv))
	cfg.NodeName = "child-worker"
	cfg.Concurrency = 2
	cfg.ViewWindow = time.Hour
	deps := testDeps(os.Getenv(childNATSEnv), newStoreClient(os.Getenv(childStoreEnv)))
	deps.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := worker.New(cfg, deps)
	if err == nil {
		err = w.Open()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	for !w.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	w.Close()
}

// testDeps are a worker's dependencies: the NATS server at natsURL and st.
func testDeps(natsURL string, st store.Store) worker.Deps {
	return worker.Deps{Store: st, NATS: func() []string { return []string{natsURL} }}
}

// testConfig is a worker config with short timeouts: a job not answered
// within 3s goes to another worker.
func testConfig(outbox string) worker.Config {
	cfg := worker.DefaultConfig()
	cfg.Outbox = outbox
	cfg.JobTimeout = 2 * time.Second
	cfg.ViewWindow = 50 * time.Millisecond
	cfg.StopTimeout = 5 * time.Second
	cfg.Jobs.AckWait = 3 * time.Second
	cfg.Jobs.MaxDeliver = 3
	cfg.Jobs.BackoffBase = 50 * time.Millisecond
	return cfg
}

func newStoreClient(addr string) *store.Client {
	return store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: "store-1", Addr: addr, Primary: true}},
		Timeout:  10 * time.Second,
	})
}

// env is a NATS server, a store and the blog's services over it.
type env struct {
	nats    *natsserver.Server
	natsCfg natsserver.ServerConfig // to start it again (restartNATS)
	store   *server.Server
	client  *store.Client
	svc     app.Services
	outbox  string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	qc := natsserver.DefaultServerConfig()
	qc.Name, qc.ClientPort, qc.DataDir, qc.Standalone = "nats-1", 0, t.TempDir(), true
	ns, err := natsserver.NewServer(qc)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })

	sc := server.DefaultConfig()
	sc.Addr, sc.NodeName, sc.DataDir = "127.0.0.1:0", "store-1", t.TempDir()
	ss, err := server.New(sc, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	c := newStoreClient(ss.Addr())
	t.Cleanup(func() { c.Close() })
	return &env{nats: ns, natsCfg: qc, store: ss, client: c, svc: app.NewServices(c, 4), outbox: t.TempDir()}
}

// startWorker starts an in-process worker and waits until it consumes.
func (e *env) startWorker(t testing.TB, edit func(*worker.Config, *worker.Deps)) *worker.Worker {
	t.Helper()
	cfg := testConfig(e.outbox)
	deps := testDeps(e.nats.ClientURL(), e.client)
	deps.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if edit != nil {
		edit(&cfg, &deps)
	}
	w, err := worker.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	testwait.RetryUntil(t, 20*time.Second, func() error { // worker ready
		if !w.Ready() {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	return w
}

// publisher returns a Publisher to the env's NATS server.
func (e *env) publisher(t testing.TB) *worker.Publisher {
	t.Helper()
	p, err := worker.NewPublisher(worker.PublisherConfig{Name: "app", Jobs: queue.DefaultJobsConfig()},
		worker.PublisherDeps{NATS: func() []string { return []string{e.nats.ClientURL()} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// startChild runs a worker in a helper process and waits until it consumes.
func (e *env) startChild(t testing.TB) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childNATSEnv+"="+e.nats.ClientURL(),
		childStoreEnv+"="+e.store.Addr(), childOutboxEnv+"="+e.outbox)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("child worker: %q, %v", line, err)
	}
	return cmd
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// emails counts the .eml files in the outbox.
func emails(t testing.TB, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
