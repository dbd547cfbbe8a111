package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// BenchmarkPublish measures one synchronous JetStream publish (publish and
// wait for the ack) of a 256-byte job on a standalone server, with and
// without SyncAlways: the price of not losing acknowledged messages.
func BenchmarkPublish(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync_always=%v", sync), func(b *testing.B) {
			cfg := serverConfig(b, "bench", "127.0.0.2")
			cfg.Standalone = true
			cfg.SyncAlways = sync
			cfg.Logger = nil
			s := mustOpen(b, cfg)
			c := mustConnect(b, "bench", staticServers(s.ClientURL()))
			ctx := context.Background()
			if _, err := c.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}}); err != nil {
				b.Fatal(err)
			}
			payload := []byte(strings.Repeat("j", 256))
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if _, err := c.JetStream().Publish(ctx, "jobs.x", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishR3 measures one synchronous publish to an R3 stream on
// three in-process servers with SyncAlways: the leader and one replica
// must have written (and synced) the message before the ack.
func BenchmarkPublishR3(b *testing.B) {
	var servers []*natsserver.Server
	for i, host := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		var routes []string
		if i > 0 {
			routes = []string{servers[0].ClusterURL()}
		}
		cfg := serverConfig(b, fmt.Sprintf("s%d", i+1), host, routes...)
		cfg.Logger = nil
		servers = append(servers, mustOpen(b, cfg))
	}
	waitCluster(b, servers...)
	c := mustConnect(b, "bench", staticServers(servers[0].ClientURL()))
	ctx := context.Background()
	testwait.RetryUntil(b, 20*time.Second, func() error { // create R3 stream
		_, err := c.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}, Replicas: 3})
		return err
	})
	payload := []byte(strings.Repeat("j", 256))
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := c.JetStream().Publish(ctx, "jobs.x", payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerProcess starts a process that runs one embedded server
// and reports its resident memory once it is up and has idled for a
// second, next to a process of the same binary without a server (the Go
// runtime and test binary alone). start-ms is the time from exec to
// accepting connections; ns/op includes the second of idling.
func BenchmarkServerProcess(b *testing.B) {
	for _, mode := range []string{"baseline", "standalone", "clustered"} {
		b.Run(mode, func(b *testing.B) {
			var rss int64
			var start time.Duration
			for b.Loop() {
				cc := childConfig{name: "rss", host: "127.0.0.2", dir: b.TempDir(),
					idle: mode == "baseline", standalone: mode == "standalone"}
				t0 := time.Now()
				ch := startChild(b, cc)
				start += time.Since(t0)
				time.Sleep(time.Second) // idle is what is measured
				rss += vmRSS(b, ch.cmd.Process.Pid)
				ch.kill()
			}
			b.ReportMetric(float64(rss)/float64(b.N)/1024, "RSS-MiB")
			b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms")
		})
	}
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(b testing.TB, pid int) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
