package queue_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// TestTLSGuardsClientsAndRoutes: two servers with TLS on the client port
// and mutual TLS on routes form a cluster; queue.Connect with the CA gets
// JetStream; a plain client, and a server whose certificate another CA
// signed, get nothing.
func TestTLSGuardsClientsAndRoutes(t *testing.T) {
	ca := testcert.NewCA(t)
	withTLS := func(cfg natsserver.ServerConfig, host string) natsserver.ServerConfig {
		nt := ca.TLS(host)
		cfg.TLS, cfg.RouteTLS = nt.Server, nt.Mutual
		return cfg
	}
	s1 := mustOpen(t, withTLS(serverConfig(t, "s1", "127.0.0.2"), "127.0.0.2"))
	s2 := mustOpen(t, withTLS(serverConfig(t, "s2", "127.0.0.3", s1.ClusterURL()), "127.0.0.3"))
	waitCluster(t, s1, s2)

	// A server of another CA routes to s1 and is refused.
	stranger := testcert.NewCA(t).TLS("127.0.0.4")
	cfg := serverConfig(t, "intruder", "127.0.0.4", s1.ClusterURL())
	cfg.TLS, cfg.RouteTLS = stranger.Server, stranger.Mutual
	bad := mustOpen(t, cfg)
	time.Sleep(2 * time.Second) // several route attempts
	if got := bad.ClusterSize(); got != 1 {
		t.Errorf("server of another CA sees cluster size %d, want 1 (alone)", got)
	}
	if got := s1.ClusterSize(); got != 2 {
		t.Errorf("s1 sees cluster size %d after the intruder tried, want 2", got)
	}

	if nc, err := nats.Connect(s1.ClientURL(), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("a plain client connected to the TLS client port")
	}
	if nc, err := nats.Connect(s1.ClientURL(), nats.Secure(&tls.Config{RootCAs: testcert.NewCA(t).Pool()}), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Errorf("a client trusting another CA connected")
	}

	c := mustConnect(t, "client", staticServers(s2.ClientURL()), func(cc *queue.ClientConfig) { cc.TLS = ca.TLS("127.0.0.1").Client })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatalf("WaitJetStream over TLS: %v", err)
	}
}
