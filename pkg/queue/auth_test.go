package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// TestPasswordGuardsClientsAndRoutes runs a cluster of two servers that
// share a password: clients and routes that present it get in, those that
// do not are refused, and a server with another password never joins.
func TestPasswordGuardsClientsAndRoutes(t *testing.T) {
	const pw = "correct horse battery staple"
	withPW := func(cfg natsserver.ServerConfig, p string) natsserver.ServerConfig {
		cfg.Password = p
		return cfg
	}
	s1 := mustOpen(t, withPW(serverConfig(t, "s1", "127.0.0.2"), pw))
	s2 := mustOpen(t, withPW(serverConfig(t, "s2", "127.0.0.3", s1.ClusterURL()), pw))
	waitCluster(t, s1, s2)

	// A server with the wrong password routes to s1 but is refused.
	bad := mustOpen(t, withPW(serverConfig(t, "intruder", "127.0.0.4", s1.ClusterURL()), "wrong"))
	time.Sleep(2 * time.Second) // several route attempts
	if got := bad.ClusterSize(); got != 1 {
		t.Errorf("server with the wrong password sees cluster size %d, want 1 (alone)", got)
	}
	if got := s1.ClusterSize(); got != 2 {
		t.Errorf("s1 sees cluster size %d after the intruder tried, want 2", got)
	}
	if st, err := json.Marshal(s1.Status()); err != nil || strings.Contains(string(st), pw) || !strings.Contains(string(st), "configured_routes") {
		t.Errorf("status %s (err %v): want the configured routes without the password", st, err)
	}

	// Plain nats.go clients: none and wrong credentials are refused, with
	// nats.go's authorization error; the right ones get in.
	for _, tc := range []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"no credentials", nil, false},
		{"wrong password", []nats.Option{nats.UserInfo(queue.AuthUser, "wrong")}, false},
		{"right password", []nats.Option{nats.UserInfo(queue.AuthUser, pw)}, true},
	} {
		nc, err := nats.Connect(s2.ClientURL(), append(tc.opts, nats.Timeout(2*time.Second), nats.NoReconnect())...)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: connect: %v, want success", tc.name, err)
		case !tc.ok && err == nil:
			nc.Close()
			t.Errorf("%s: connected, want refusal", tc.name)
		case !tc.ok && !errors.Is(err, nats.ErrAuthorization):
			t.Errorf("%s: error %v, want nats.ErrAuthorization", tc.name, err)
		}
		if err == nil {
			nc.Close()
		}
	}

	// queue.Connect with the password: JetStream works across both servers.
	cfg := queue.DefaultClientConfig()
	cfg.Name, cfg.Password = "client", pw
	cfg.Servers = staticServers(s1.ClientURL())
	cfg.Logger = testLogger(t, "client")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := queue.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect with the password: %v", err)
	}
	defer c.Close()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatalf("WaitJetStream: %v", err)
	}
	sub, err := c.NATS().SubscribeSync("auth.test")
	if err != nil {
		t.Fatal(err)
	}
	c.NATS().Flush()
	// Published on s2 by another authenticated client, delivered over the
	// authenticated route to s1.
	nc, err := nats.Connect(s2.ClientURL(), nats.UserInfo(queue.AuthUser, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The subscription's interest reaches s2 over the route a moment after
	// s1 has it: publish until one arrives (a message sent before is
	// dropped by s2, as core NATS does for subjects nobody listens to).
	var msg *nats.Msg
	for try := 0; try < 50 && msg == nil; try++ {
		if err := nc.Publish("auth.test", []byte("over the route")); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		msg, err = sub.NextMsg(100 * time.Millisecond)
	}
	if msg == nil || string(msg.Data) != "over the route" {
		t.Fatalf("message across the authenticated route: %v, %v", msg, err)
	}

	// queue.Connect without the password keeps failing until its context ends.
	cfg.Password = ""
	short, cancel2 := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel2()
	if c2, err := queue.Connect(short, cfg); err == nil {
		c2.Close()
		t.Fatal("queue.Connect without the password succeeded")
	}
}
