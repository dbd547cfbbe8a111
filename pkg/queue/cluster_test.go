package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// TestClusterOfThree is the done-when: three servers started one
// after another, the later ones knowing only the first, form one cluster;
// an R3 stream accepts messages, and still does after one server stops.
// Servers that start later, alone, join when told of peers through SetPeers,
// from either side.
func TestClusterOfThree(t *testing.T) {
	s1 := mustOpen(t, serverConfig(t, "s1", "127.0.0.2"))
	// A clustered server alone has no JetStream meta leader: nats-server's
	// Raft waits for a route first.
	if got := s1.MetaLeader(); got != "" {
		t.Fatalf("lone clustered server has meta leader %q, want none", got)
	}
	s2 := mustOpen(t, serverConfig(t, "s2", "127.0.0.3", s1.ClusterURL()))
	// s3 hears of s1 through SetPeers before it opens, as a node whose
	// membership is up before its NATS server would.
	s3, err := natsserver.NewServer(serverConfig(t, "s3", "127.0.0.4"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.SetPeers([]string{s1.ClusterURL()}); err != nil {
		t.Fatalf("SetPeers before Open: %v", err)
	}
	if err := s3.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s3.Close() })
	start := time.Now()
	waitCluster(t, s1, s2, s3)
	t.Logf("three servers elected meta leader %q in %v", s1.MetaLeader(), time.Since(start))

	// The client knows only s2; it learns the others from the cluster.
	c := mustConnect(t, "client", staticServers(s2.ClientURL()))
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	var stream jetstream.Stream
	testwait.RetryUntil(t, 20*time.Second, func() error { // create R3 stream
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name: "JOBS", Subjects: []string{"jobs.>"}, Replicas: queue.Replicas(s1.ClusterSize()),
		})
		return err
	})
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream replicas = %d, cluster %+v; want R3 with a leader and 2 replicas", info.Config.Replicas, info.Cluster)
	}
	want := []string{"m1", "m2", "m3"}
	for _, m := range want {
		publish(t, js, "jobs.email", m, 10*time.Second)
	}

	// Stop the stream's leader; the stream goes on.
	servers := map[string]*natsserver.Server{"s1": s1, "s2": s2, "s3": s3}
	leader := info.Cluster.Leader
	if err := servers[leader].Close(); err != nil {
		t.Fatalf("Close %s: %v", leader, err)
	}
	delete(servers, leader)
	start = time.Now()
	publish(t, js, "jobs.email", "m4", 20*time.Second)
	t.Logf("after a graceful stop of stream leader %s, publishing resumed in %v", leader, time.Since(start))
	want = append(want, "m4")
	if got := streamMessages(t, js, "JOBS"); !slices.Equal(got, want) {
		t.Errorf("stream holds %q, want %q", got, want)
	}

	var alive []*natsserver.Server
	var peers []string
	for _, name := range []string{"s1", "s2", "s3"} {
		if s, ok := servers[name]; ok {
			alive = append(alive, s)
			peers = append(peers, s.ClusterURL())
		}
	}

	// A server that started alone joins when it is told of the others.
	s4 := mustOpen(t, serverConfig(t, "s4", "127.0.0.5"))
	if err := s4.SetPeers(append(peers, s4.ClusterURL())); err != nil {
		t.Fatalf("SetPeers on s4: %v", err)
	}
	alive = append(alive, s4)
	waitCluster(t, alive...)

	// And one that started alone joins when an old member is told of it.
	s5 := mustOpen(t, serverConfig(t, "s5", "127.0.0.6"))
	if err := alive[0].SetPeers([]string{s4.ClusterURL(), s5.ClusterURL()}); err != nil {
		t.Fatalf("SetPeers on %s: %v", alive[0].Status().(natsserver.ServerStatus).Name, err)
	}
	alive = append(alive, s5)
	waitCluster(t, alive...)

	// A membership hiccup that lists no peers keeps every route.
	before := s4.Status().(natsserver.ServerStatus).ConfiguredRoutes
	if err := s4.SetPeers(nil); err != nil {
		t.Fatalf("SetPeers(nil): %v", err)
	}
	if after := s4.Status().(natsserver.ServerStatus).ConfiguredRoutes; !slices.Equal(after, before) {
		t.Errorf("after SetPeers(nil) s4 routes to %q, want still %q", after, before)
	}
	if got := s4.ClusterSize(); got != len(alive) {
		t.Errorf("after SetPeers(nil) s4 sees %d servers, want %d", got, len(alive))
	}

	// JetStream works through the newcomer.
	c5 := mustConnect(t, "client5", staticServers(s5.ClientURL()))
	if err := c5.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, c5.JetStream(), "jobs.email", "m5", 10*time.Second)
	want = append(want, "m5")
	if got := streamMessages(t, c5.JetStream(), "JOBS"); !slices.Equal(got, want) {
		t.Errorf("through s5 the stream holds %q, want %q", got, want)
	}

	st := s5.Status().(natsserver.ServerStatus)
	if st.ClusterSize != len(alive) || st.MetaLeader == "" {
		t.Errorf("s5 Status() cluster size %d, meta leader %q; want %d and a leader", st.ClusterSize, st.MetaLeader, len(alive))
	}
	if _, err := json.Marshal(s5.Status()); err != nil {
		t.Errorf("Status() does not marshal: %v", err)
	}
}

// TestClusterSurvivesCrash SIGKILLs the server leading an R3 stream: a
// crash, not a graceful stop, so no leadership is handed over and
// nats-server's Raft has to notice and elect. The killed server then comes
// back with the same name and data and catches up.
func TestClusterSurvivesCrash(t *testing.T) {
	s1 := mustOpen(t, serverConfig(t, "s1", "127.0.0.2"))
	s2 := mustOpen(t, serverConfig(t, "s2", "127.0.0.3", s1.ClusterURL()))
	crashDir := t.TempDir()
	cc := childConfig{name: "s3", host: "127.0.0.4", dir: crashDir, routes: []string{s1.ClusterURL()}}
	ch := startChild(t, cc)
	testwait.RetryUntil(t, 20*time.Second, func() error { // cluster forms
		for _, s := range []*natsserver.Server{s1, s2} {
			if got := s.ClusterSize(); got != 3 {
				return fmt.Errorf("a server sees %d servers, want 3", got)
			}
			if s.MetaLeader() == "" {
				return fmt.Errorf("no meta leader")
			}
		}
		return nil
	})

	c := mustConnect(t, "client", staticServers(s1.ClientURL()))
	js := c.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		t.Fatal(err)
	}
	// Routes come up before the meta group has heard from every JetStream
	// peer; until then an R3 stream finds "no suitable peers for placement".
	testwait.RetryUntil(t, 20*time.Second, func() error { // create R3 stream
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.>"}, Replicas: 3})
		return err
	})
	want := []string{"m1", "m2"}
	for _, m := range want {
		publish(t, js, "jobs.x", m, 10*time.Second)
	}
	moveLeader(t, c, "JOBS", "s3")

	ch.kill()
	start := time.Now()
	publish(t, js, "jobs.x", "m3", 30*time.Second)
	t.Logf("after kill -9 of stream leader s3, publishing resumed in %v", time.Since(start))
	want = append(want, "m3")

	// s3 comes back on the same cluster port with its data and catches up.
	cc.clusterPort = portOf(t, ch.clusterURL)
	startChild(t, cc)
	testwait.RetryUntil(t, 30*time.Second, func() error { // s3 current again
		// A stream request during an election goes unanswered until its
		// context ends; a short one per attempt keeps the loop going.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "JOBS")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == "s3" && r.Current && !r.Offline {
				return nil
			}
		}
		return fmt.Errorf("s3 not a current replica: %+v", info.Cluster)
	})
	// Reading through s3 as the leader shows it has every message.
	moveLeader(t, c, "JOBS", "s3")
	if got := streamMessages(t, js, "JOBS"); !slices.Equal(got, want) {
		t.Errorf("with restarted s3 leading, the stream holds %q, want %q", got, want)
	}
}

// moveLeader hands the stream's leadership to want and waits until it
// leads.
func moveLeader(t testing.TB, c *queue.Conn, stream, want string) {
	t.Helper()
	testwait.RetryUntil(t, 30*time.Second, func() error { // move the leader of stream to want
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := c.JetStream().Stream(ctx, stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster.Leader == want {
			return nil
		}
		if info.Cluster.Leader != "" {
			if err := c.StepDown(ctx, stream, want); err != nil {
				return err
			}
		}
		return fmt.Errorf("leader is %q", info.Cluster.Leader)
	})
}

func portOf(t testing.TB, u string) int {
	t.Helper()
	i := strings.LastIndexByte(u, ':')
	var p int
	if _, err := fmt.Sscan(u[i+1:], &p); err != nil {
		t.Fatalf("port of %q: %v", u, err)
	}
	return p
}
