package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
)

// membership is a changing list of client URLs, as a node's membership
// would give them.
type membership struct {
	mu    sync.Mutex
	urls  []string
	calls atomic.Int64
}

func (m *membership) set(urls ...string) {
	m.mu.Lock()
	m.urls = urls
	m.mu.Unlock()
}

func (m *membership) servers() []string {
	m.calls.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.urls...)
}

func TestClientConfigValidate(t *testing.T) {
	cfg := queue.DefaultClientConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "Servers") {
		t.Errorf("Validate() without Servers = %v, want an error naming Servers", err)
	}
	cfg.Servers = staticServers()
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}
	cfg.ReconnectWait = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ReconnectWait") {
		t.Errorf("Validate() = %v, want an error naming ReconnectWait", err)
	}
}

func TestConnectWaitsForAServer(t *testing.T) {
	m := &membership{}
	cfg := queue.DefaultClientConfig()
	cfg.Servers = m.servers
	cfg.RetryInterval = 20 * time.Millisecond
	cfg.Logger = testLogger(t, "client")

	// No server ever: Connect gives up when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := queue.Connect(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect with no server = %v, want DeadlineExceeded", err)
	}

	// A server that appears while Connect waits is used.
	type result struct {
		c   *queue.Conn
		err error
	}
	got := make(chan result, 1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	before := m.calls.Load()
	go func() {
		c, err := queue.Connect(ctx2, cfg)
		got <- result{c, err}
	}()
	testwait.RetryUntil(t, 5*time.Second, func() error { // Connect asks membership again
		if m.calls.Load() < before+2 {
			return errors.New("not yet")
		}
		return nil
	})
	cfgS := serverConfig(t, "late", "127.0.0.2")
	cfgS.Standalone = true
	s := mustOpen(t, cfgS)
	m.set(strings.TrimPrefix(s.ClientURL(), "nats://")) // bare host:port works too
	r := <-got
	if r.err != nil {
		t.Fatalf("Connect = %v, want a connection once a server is known", r.err)
	}
	defer r.c.Close()
	if st := r.c.Status().(queue.ConnStatus); !st.Connected || st.Server != "late" {
		t.Errorf("Status() = %+v, want connected to late", st)
	}
}

// TestConnFollowsCluster: a client that knows one server learns the rest of
// the cluster from it and moves to another server when its own stops.
func TestConnFollowsCluster(t *testing.T) {
	s1 := mustOpen(t, serverConfig(t, "s1", "127.0.0.2"))
	s2 := mustOpen(t, serverConfig(t, "s2", "127.0.0.3", s1.ClusterURL()))
	testwait.RetryUntil(t, 10*time.Second, func() error { // routes
		if s1.ClusterSize() != 2 {
			return errors.New("s1 and s2 not routed")
		}
		return nil
	})
	var reconnects atomic.Int32
	c := mustConnect(t, "client", staticServers(s1.ClientURL()), func(cc *queue.ClientConfig) {
		cc.OnReconnect = func() { reconnects.Add(1) }
	})
	testwait.RetryUntil(t, 10*time.Second, func() error { // client learns s2
		for _, u := range c.NATS().Servers() {
			if u == s2.ClientURL() {
				return nil
			}
		}
		return fmt.Errorf("client knows %v", c.NATS().Servers())
	})

	// A subscription survives the move.
	sub, err := c.NATS().SubscribeSync("purge")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	s1.Close()
	testwait.RetryUntil(t, 10*time.Second, func() error { // client on s2
		if st := c.Status().(queue.ConnStatus); !st.Connected || st.Server != "s2" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	other := mustConnect(t, "publisher", staticServers(s2.ClientURL()))
	// The client resubscribes on reconnect; publish until it hears.
	testwait.RetryUntil(t, 10*time.Second, func() error { // message after reconnect
		if err := other.NATS().Publish("purge", []byte("/posts/1")); err != nil {
			return err
		}
		m, err := sub.NextMsg(100 * time.Millisecond)
		if err != nil {
			return err
		}
		if string(m.Data) != "/posts/1" {
			return fmt.Errorf("got %q", m.Data)
		}
		return nil
	})
	if st := c.Status().(queue.ConnStatus); st.Reconnects < 1 {
		t.Errorf("Status().Reconnects = %d, want at least 1", st.Reconnects)
	}
	// OnReconnect runs on nats.go's callback goroutine, soon after.
	testwait.RetryUntil(t, 5*time.Second, func() error { // OnReconnect called
		if reconnects.Load() < 1 {
			return errors.New("not yet")
		}
		return nil
	})
}

// TestConnFallsBackToMembership: when every server the client knows is
// gone, it finds a server it only learned of through membership.
func TestConnFallsBackToMembership(t *testing.T) {
	cfgA := serverConfig(t, "a", "127.0.0.2")
	cfgA.Standalone = true
	a := mustOpen(t, cfgA)
	m := &membership{}
	m.set(a.ClientURL())
	c := mustConnect(t, "client", m.servers)

	// b is not clustered with a, so the client never hears of it from a.
	cfgB := serverConfig(t, "b", "127.0.0.3")
	cfgB.Standalone = true
	b := mustOpen(t, cfgB)
	m.set(a.ClientURL(), b.ClientURL())
	a.Close()
	testwait.RetryUntil(t, 10*time.Second, func() error { // client on b
		if st := c.Status().(queue.ConnStatus); !st.Connected || st.Server != "b" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Errorf("JetStream through b: %v", err)
	}
}

func TestConnClose(t *testing.T) {
	cfg := serverConfig(t, "a", "127.0.0.2")
	cfg.Standalone = true
	s := mustOpen(t, cfg)
	c := mustConnect(t, "client", staticServers(s.ClientURL()))
	if !c.Ready() {
		t.Fatalf("Ready() = false on a new connection")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c.Ready() {
		t.Errorf("Ready() = true after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}
