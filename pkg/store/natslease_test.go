package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store"
)

// startNATS runs one embedded NATS server with JetStream, clustered the way
// a node runs it, and returns a connection to it.
func startNATS(tb testing.TB, name string) (*queue.Server, *queue.Conn) {
	tb.Helper()
	cfg := queue.DefaultServerConfig()
	cfg.Name = name
	cfg.Host = "127.0.0.1"
	cfg.ClientPort, cfg.ClusterPort = 0, 0
	cfg.DataDir = filepath.Join(tb.TempDir(), "nats")
	cfg.Standalone = true
	s, err := queue.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	cc := queue.DefaultClientConfig()
	cc.Servers = func() []string { return []string{s.ClientURL()} }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := queue.Connect(ctx, cc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return s, c
}

// TestNATSLease: the lease in a JetStream bucket is a compare-and-set
// register, and a primary over it takes writes soon after it starts.
func TestNATSLease(t *testing.T) {
	ns, conn := startNATS(t, "n1")
	l := store.NewNATSLease(conn.JetStream(), "g", ns.ClusterSize, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := conn.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(ctx); !errors.Is(err, store.ErrNoLease) {
		t.Fatalf("Get on a new bucket: err = %v, want ErrNoLease", err)
	}
	rev, err := l.Create(ctx, store.LeaseRecord{Holder: "a", Epoch: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Create(ctx, store.LeaseRecord{Holder: "b"}); !errors.Is(err, store.ErrLeaseTaken) {
		t.Fatalf("second Create: err = %v, want ErrLeaseTaken", err)
	}
	rev2, err := l.Update(ctx, store.LeaseRecord{Holder: "a", Epoch: 2}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Update(ctx, store.LeaseRecord{Holder: "b", Epoch: 3}, rev); !errors.Is(err, store.ErrLeaseTaken) {
		t.Fatalf("Update at a stale revision: err = %v, want ErrLeaseTaken", err)
	}
	rec, got, err := l.Get(ctx)
	if err != nil || got != rev2 || rec.Holder != "a" {
		t.Fatalf("Get = %+v, %d, %v; want holder a at %d", rec, got, err, rev2)
	}
	if err := l.Maintain(ctx, "n1"); err != nil {
		t.Fatalf("Maintain: %v", err)
	}

	// A store primary on its own lease bucket.
	l2 := store.NewNATSLease(conn.JetStream(), "other", ns.ClusterSize, nil)
	start := time.Now()
	p := startServer(t, func(c *store.Config) { c.Lease = l2; c.NodeName = "p" })
	waitFor(t, 10*time.Second, func() error {
		_, err := p.DB().Txn(context.Background(), store.Put("b", "k", []byte("v")))
		return err
	})
	t.Logf("first write %v after the primary started", time.Since(start).Round(time.Millisecond))
	if st := replStatus(p); st.Lease == nil || st.Lease.Holder != "p" || st.Epoch < 2 {
		t.Fatalf("status = %+v, want lease held by p at epoch >= 2", st)
	}
}
