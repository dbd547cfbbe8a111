package queue_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
)

// Issue 17: a lone clustered server (the store node of stages 1 to 3)
// logged nats-server's "Waiting for routing to be established..." as a
// warning every two seconds, forever. The wait is a state: logged once at
// info, its repeats at debug, and its end once when a second server joins.
func TestLoneServerLogsTheRouteWaitOnce(t *testing.T) {
	var logs syncbuf.Buffer
	cfg := serverConfig(t, "alone", "127.0.0.1")
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := mustOpen(t, cfg)

	// nats-server says it again about every two seconds: wait for a
	// repeat, so that the log covers more than one.
	testwait.Until(t, 15*time.Second, "nats-server repeating its route wait", func() bool {
		return len(logs.Lines("level=DEBUG", "Waiting for routing")) >= 1
	})
	if got := logs.Lines("level=WARN", "Waiting for routing"); len(got) != 0 {
		t.Errorf("the route wait logged as a warning:\n%s", strings.Join(got, ""))
	}
	if got := logs.Lines("level=INFO", "jetstream waits for another NATS server"); len(got) != 1 {
		t.Errorf("%d info lines about the route wait, want 1:\n%s", len(got), logs.String())
	}

	// A second server routes to it: the wait ends, and says so once.
	b := mustOpen(t, serverConfig(t, "second", "127.0.0.1", a.ClusterURL()))
	testwait.Until(t, 30*time.Second, "the first server logging the end of the wait", func() bool {
		return len(logs.Lines("level=INFO", "the wait for another NATS server is over")) == 1
	})
	waitCluster(t, a, b)
}
