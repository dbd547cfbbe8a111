package cdn_test

import (
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cdn"
)

// natsPurges is the adapter the node uses: cdn.Purges over a nats.Conn.
type natsPurges struct{ nc *nats.Conn }

func (p natsPurges) Subscribe(subject string, fn func([]byte), _ func()) (func(), error) {
	sub, err := p.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}

// TestPurgeOverRealNATS: the app publishes on scalestack.purge through a
// real NATS server, and the next request for the page goes to the origin.
func TestPurgeOverRealNATS(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats server not ready")
	}
	edgeConn, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(edgeConn.Close)
	appConn, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(appConn.Close)

	e := newEdge(t, cacheablePages(t).URL, func(c *cdn.Config, d *cdn.Deps) { d.Purges = natsPurges{edgeConn} })
	fill(t, e, "/p/42", "/p/43")
	if err := edgeConn.Flush(); err != nil { // the subscription is in place
		t.Fatalf("flush: %v", err)
	}
	start := time.Now()
	if err := appConn.Publish(cdn.PurgeSubject, []byte(`{"urls":["/p/42"],"keys":["post-42","home"]}`)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	testwait.Until(t, 5*time.Second, "the purge to arrive", func() bool { return e.Snapshot().Purges == 1 })
	t.Logf("purge applied %v after publish", time.Since(start))
	wantCache(t, "/p/42 after purge", get(t, e, "/p/42"), cdn.Miss, "page /p/42")
	wantCache(t, "/p/43 untouched", get(t, e, "/p/43"), cdn.Hit, "page /p/43")
}
