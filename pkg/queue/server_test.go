package queue_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

func TestServerConfigValidate(t *testing.T) {
	valid := func() natsserver.ServerConfig {
		c := natsserver.DefaultServerConfig()
		c.Name = "store-1"
		c.DataDir = "/tmp/x"
		return c
	}
	tests := []struct {
		name   string
		modify func(*natsserver.ServerConfig)
		field  string // expected in the error; "" means valid
	}{
		{"defaults", func(*natsserver.ServerConfig) {}, ""},
		{"no name", func(c *natsserver.ServerConfig) { c.Name = "" }, "Name"},
		{"space in name", func(c *natsserver.ServerConfig) { c.Name = "a b" }, "Name"},
		{"no host", func(c *natsserver.ServerConfig) { c.Host = "" }, "Host"},
		{"client port", func(c *natsserver.ServerConfig) { c.ClientPort = 70000 }, "ClientPort"},
		{"cluster port", func(c *natsserver.ServerConfig) { c.ClusterPort = -2 }, "ClusterPort"},
		{"same ports", func(c *natsserver.ServerConfig) { c.ClusterPort = c.ClientPort }, "ClusterPort"},
		{"no cluster name", func(c *natsserver.ServerConfig) { c.ClusterName = "" }, "ClusterName"},
		{"no data dir", func(c *natsserver.ServerConfig) { c.DataDir = "" }, "DataDir"},
		{"negative memory", func(c *natsserver.ServerConfig) { c.MaxMemory = -1 }, "MaxMemory"},
		{"negative store", func(c *natsserver.ServerConfig) { c.MaxStore = -1 }, "MaxStore"},
		{"no start timeout", func(c *natsserver.ServerConfig) { c.StartTimeout = 0 }, "StartTimeout"},
		{"bad route", func(c *natsserver.ServerConfig) { c.Routes = []string{"nats-route://nohost"} }, "Routes"},
		{"bare route", func(c *natsserver.ServerConfig) { c.Routes = []string{"127.0.0.2:6222"} }, ""},
		{"standalone with routes", func(c *natsserver.ServerConfig) {
			c.Standalone = true
			c.Routes = []string{"127.0.0.2:6222"}
		}, "Routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

func TestReplicas(t *testing.T) {
	for _, tt := range []struct{ servers, want int }{{0, 1}, {1, 1}, {2, 2}, {3, 3}, {5, 3}} {
		if got := queue.Replicas(tt.servers); got != tt.want {
			t.Errorf("Replicas(%d) = %d, want %d", tt.servers, got, tt.want)
		}
	}
}

func TestStandaloneServer(t *testing.T) {
	cfg := serverConfig(t, "solo", "127.0.0.2")
	cfg.Standalone = true
	s := mustOpen(t, cfg)
	if !s.Ready() {
		t.Fatalf("Ready() = false after Open")
	}
	if got := s.ClusterURL(); got != "" {
		t.Errorf("ClusterURL() = %q on a standalone server, want \"\"", got)
	}
	c := mustConnect(t, "client", staticServers(s.ClientURL()))
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "JOBS", Subjects: []string{"jobs.>"}, Replicas: queue.Replicas(s.ClusterSize()),
	})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	want := []string{"j1", "j2", "j3"}
	for _, m := range want {
		publish(t, js, "jobs.email", m, 5*time.Second)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("CreateConsumer: %v", err)
	}
	batch, err := cons.Fetch(len(want), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("consumed %q, want %q", got, want)
	}

	st := s.Status().(natsserver.ServerStatus)
	if !st.SyncAlways {
		t.Errorf("Status().SyncAlways = false, want true (the default)")
	}
	if st.Streams != 1 || st.Messages != 3 {
		t.Errorf("Status() streams=%d messages=%d, want 1 and 3", st.Streams, st.Messages)
	}
	// The stream's files are where the node's data is, not in a temp dir.
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "jetstream", "$G", "streams", "JOBS")); err != nil {
		t.Errorf("stream directory in DataDir: %v", err)
	}
	if err := s.SetPeers([]string{"nats-route://127.0.0.3:6222"}); !errors.Is(err, natsserver.ErrStandalone) {
		t.Errorf("SetPeers on a standalone server = %v, want ErrStandalone", err)
	}
}

// TestRestartKeepsMessages restarts a server gracefully with the same name
// and DataDir.
func TestRestartKeepsMessages(t *testing.T) {
	cfg := serverConfig(t, "solo", "127.0.0.2")
	cfg.Standalone = true
	s := mustOpen(t, cfg)
	c := mustConnect(t, "client", staticServers(s.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	want := []string{"a", "b", "c"}
	for _, m := range want {
		publish(t, c.JetStream(), "jobs.x", m, 5*time.Second)
	}
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s.Ready() {
		t.Errorf("Ready() = true after Close")
	}

	s2 := mustOpen(t, cfg)
	c2 := mustConnect(t, "client2", staticServers(s2.ClientURL()))
	if got := streamMessages(t, c2.JetStream(), "JOBS"); !slices.Equal(got, want) {
		t.Errorf("after restart the stream holds %q, want %q", got, want)
	}
}

// TestCrashKeepsAcknowledged SIGKILLs a server process while a client
// publishes, and checks every acknowledged message is there after restart.
func TestCrashKeepsAcknowledged(t *testing.T) {
	dir := t.TempDir()
	ch := startChild(t, childConfig{name: "crashy", host: "127.0.0.2", dir: dir, standalone: true})
	c := mustConnect(t, "client", staticServers(ch.clientURL))
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}

	// Publish in the background until the kill, keeping what was acked.
	acked := make(chan string, 10000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			_, err := js.Publish(pctx, "jobs.x", []byte(strings.Repeat("x", 100)+strconv.Itoa(i)))
			pcancel()
			if err != nil {
				return
			}
			acked <- strings.Repeat("x", 100) + strconv.Itoa(i)
		}
	}()
	testwait.RetryUntil(t, 10*time.Second, func() error { // some publishes acknowledged
		if len(acked) < 200 {
			return errors.New("fewer than 200")
		}
		return nil
	})
	ch.kill()
	<-done
	close(acked)
	var want []string
	for m := range acked {
		want = append(want, m)
	}

	cfg := serverConfig(t, "crashy", "127.0.0.2")
	cfg.Standalone = true
	cfg.DataDir = dir
	s := mustOpen(t, cfg)
	c2 := mustConnect(t, "client2", staticServers(s.ClientURL()))
	got := streamMessages(t, c2.JetStream(), "JOBS")
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("after kill -9 the stream holds %d messages, want the %d acknowledged ones first", len(got), len(want))
	}
	t.Logf("%d acknowledged messages survived kill -9 (%d stored)", len(want), len(got))
}

func TestOpenPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := serverConfig(t, "busy", "127.0.0.2")
	cfg.ClientPort = l.Addr().(*net.TCPAddr).Port
	s, err := natsserver.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Open()
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Open() with a taken client port = %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), "client port") {
		t.Errorf("Open() error %q does not say which port", err)
	}
	if s.Ready() {
		t.Errorf("Ready() = true after a failed Open")
	}
}

func TestServerConfigAddFlags(t *testing.T) {
	cfg := natsserver.DefaultServerConfig()
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	cfg.AddFlags(fs)
	err := fs.Parse([]string{"--nats-cluster-name=blog", "--nats-standalone", "--nats-sync-always=false",
		"--nats-max-memory=1024", "--nats-max-store=2048"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if cfg.ClusterName != "blog" || !cfg.Standalone || cfg.SyncAlways || cfg.MaxMemory != 1024 || cfg.MaxStore != 2048 {
		t.Errorf("after flags the config is %+v", cfg)
	}
}
