package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
)

// threeNodes starts a, b and c on 127.0.0.2-4; b and c join through a.
func threeNodes(t *testing.T) (a, b, c *cluster.Cluster) {
	t.Helper()
	a = start(t, fastConfig(t, "a", "127.0.0.2"))
	b = start(t, fastConfig(t, "b", "127.0.0.3", a.Addr()))
	c = start(t, fastConfig(t, "c", "127.0.0.4", a.Addr()))
	took := testwait.Until(t, 5*time.Second, "all three see three alive", func() bool {
		return a.NumAlive() == 3 && b.NumAlive() == 3 && c.NumAlive() == 3
	})
	t.Logf("three nodes see each other after %v", took)
	return a, b, c
}

func TestJoinSeesMembersWithMeta(t *testing.T) {
	a := start(t, fastConfig(t, "a", "127.0.0.2"))
	cfg := fastConfig(t, "b", "127.0.0.3", a.Addr())
	cfg.Meta = cluster.Meta{
		Roles:   []string{"primary", "cache"},
		Addrs:   map[string]string{"store": "127.0.0.3:7070", "cache": "127.0.0.3:6379"},
		Group:   "posts",
		Service: "posts",
	}
	b := start(t, cfg)
	c := start(t, fastConfig(t, "c", "127.0.0.4", a.Addr()))
	testwait.Until(t, 5*time.Second, "all three see three alive", func() bool {
		return a.NumAlive() == 3 && b.NumAlive() == 3 && c.NumAlive() == 3
	})

	for _, n := range []*cluster.Cluster{a, b, c} {
		var names []string
		for _, m := range n.Members() {
			names = append(names, m.Name)
		}
		if want := []string{"a", "b", "c"}; !slices.Equal(names, want) {
			t.Errorf("%s: Members() = %v, want %v", n.Local().Name, names, want)
		}
	}
	got := memberOf(t, a, "b")
	if got.Addr != b.Addr() {
		t.Errorf("b.Addr = %q, want %q", got.Addr, b.Addr())
	}
	if !got.HasRole("cache") || got.HasRole("app") {
		t.Errorf("b roles = %v, want primary and cache", got.Roles)
	}
	if addr := got.RoleAddr("store"); addr != "127.0.0.3:7070" {
		t.Errorf("b.RoleAddr(store) = %q, want 127.0.0.3:7070", addr)
	}
	if got.Group != "posts" || got.Service != "posts" || got.State != cluster.StateUp || got.Status != cluster.StatusAlive {
		t.Errorf("b as seen by a = %+v, want group and service posts, state up, alive", got)
	}
	if names := memberNames(c.Alive("app")); !slices.Equal(names, []string{"a", "c"}) {
		t.Errorf("c.Alive(app) = %v, want [a c]", names)
	}
	if names := memberNames(c.Alive("")); len(names) != 3 {
		t.Errorf("c.Alive(\"\") = %v, want three members", names)
	}
	if l := b.Local(); l.Name != "b" || l.Addr != b.Addr() || l.Status != cluster.StatusAlive {
		t.Errorf("b.Local() = %+v, want b at %s, alive", l, b.Addr())
	}
}

func memberNames(ms []cluster.Member) []string {
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

func TestOwnAddressInSeedsIsIgnored(t *testing.T) {
	a := start(t, fastConfig(t, "a", "127.0.0.2"))
	// b's seed list holds b's own address too, as when every node is given
	// the same list.
	cfg := fastConfig(t, "b", "127.0.0.3", a.Addr())
	cfg.BindPort = freePort(t, "127.0.0.3")
	cfg.Seeds = append(cfg.Seeds, "127.0.0.3:"+itoa(cfg.BindPort))
	b := start(t, cfg)
	testwait.Until(t, 5*time.Second, "a sees b", func() bool { return a.NumAlive() == 2 })
	if n, err := b.Join(context.Background(), b.Addr()); n != 0 || err != nil {
		t.Errorf("b.Join(own address) = %d, %v; want 0, nil", n, err)
	}
}

func TestSeedNotReachableIsNotFatal(t *testing.T) {
	// As when three nodes are started at once with `--join 127.0.0.2:7946`
	// and default timings: b and c come up before their seed a, start alone
	// and find a through the re-join loop.
	seedPort := freePort(t, "127.0.0.2")
	seed := "127.0.0.2:" + itoa(seedPort)
	mk := func(name, ip string, port int, seeds ...string) cluster.Config {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.Seeds = name, ip, port, seeds
		cfg.Logger = testLogger(t, name)
		return cfg
	}
	begin := time.Now()
	b := start(t, mk("b", "127.0.0.3", 0, seed))
	c := start(t, mk("c", "127.0.0.4", 0, seed))
	if n := b.NumAlive(); n != 1 {
		t.Fatalf("b.NumAlive() = %d before the seed is up, want 1", n)
	}
	a := start(t, mk("a", "127.0.0.2", seedPort, seed)) // its own address: ignored
	testwait.Until(t, 10*time.Second, "a, b and c see each other", func() bool {
		return a.NumAlive() == 3 && b.NumAlive() == 3 && c.NumAlive() == 3
	})
	t.Logf("default timing: three nodes started seed-last see each other %v after the first started (re-join interval %v)",
		time.Since(begin).Round(time.Millisecond), cluster.DefaultConfig().RejoinInterval)
}

func TestSetStatePropagates(t *testing.T) {
	a, b, _ := threeNodes(t)
	events, cancel := a.Subscribe(16)
	defer cancel()

	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := b.SetState(ctx, cluster.StateDraining); err != nil {
		t.Fatalf("SetState(draining): %v", err)
	}
	if got := b.Local().State; got != cluster.StateDraining {
		t.Errorf("b.Local().State = %q, want draining", got)
	}
	testwait.Until(t, 5*time.Second, "a sees b draining", func() bool {
		return memberOf(t, a, "b").State == cluster.StateDraining
	})
	if got, want := memberNames(a.Up("app")), []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("a.Up(app) = %v, want %v", got, want)
	}
	if got, want := memberNames(a.Alive("app")), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("a.Alive(app) = %v, want %v", got, want)
	}
	ev := nextEventFor(t, events, "b", cluster.EventUpdate)
	if ev.Member.State != cluster.StateDraining {
		t.Errorf("update event state = %q, want draining", ev.Member.State)
	}

	if err := b.SetMeta(ctx, func(m *cluster.Meta) {
		m.State = cluster.StateUp
		m.Roles = append(m.Roles, "worker")
	}); err != nil {
		t.Fatalf("SetMeta: %v", err)
	}
	testwait.Until(t, 5*time.Second, "a sees b up with role worker", func() bool {
		m := memberOf(t, a, "b")
		return m.State == cluster.StateUp && m.HasRole("worker")
	})
	if err := b.SetState(ctx, "sleeping"); err == nil {
		t.Errorf("SetState(sleeping) = nil, want an error")
	}
}

// nextEventFor returns the next event about name of the given kind,
// skipping others.
func nextEventFor(tb testing.TB, events <-chan cluster.Event, name string, kind cluster.EventKind) cluster.Event {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				tb.Fatalf("event channel closed while waiting for %s of %s", kind, name)
			}
			if ev.Member.Name == name && ev.Kind == kind {
				return ev
			}
		case <-timeout:
			tb.Fatalf("no %s event for %s within 10s", kind, name)
		}
	}
}

func TestKilledNodeIsDeadThenComesBack(t *testing.T) {
	a, b, c := threeNodes(t)
	addr := c.Addr()
	events, cancel := a.Subscribe(16)
	defer cancel()

	killed := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	cfg := fastConfig(t, "c", "127.0.0.4")
	typical, worst := cfg.FailureDetection(3)
	testwait.Until(t, 10*worst, "a and b see c dead", func() bool {
		return statusOf(a, "c") == cluster.StatusDead && statusOf(b, "c") == cluster.StatusDead
	})
	t.Logf("killed node declared dead by both peers after %v (documented: typical %v, worst %v)",
		time.Since(killed).Round(time.Millisecond), typical, worst)
	if ev := nextEventFor(t, events, "c", cluster.EventLeave); ev.Member.Status != cluster.StatusDead {
		t.Errorf("leave event status = %q, want dead", ev.Member.Status)
	}
	if n := a.NumAlive(); n != 2 {
		t.Errorf("a.NumAlive() = %d, want 2", n)
	}

	// Restart with the same name and address, joining through a.
	cfg.BindPort = port(t, addr)
	cfg.Seeds = []string{a.Addr()}
	c2 := start(t, cfg)
	took := testwait.Until(t, 10*time.Second, "c back alive everywhere", func() bool {
		return statusOf(a, "c") == cluster.StatusAlive && statusOf(b, "c") == cluster.StatusAlive && c2.NumAlive() == 3
	})
	t.Logf("restarted node alive again after %v", took)
	nextEventFor(t, events, "c", cluster.EventJoin)
}

func TestRestartOnNewAddressReclaimsName(t *testing.T) {
	a, b, c := threeNodes(t)
	oldAddr := c.Addr()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "a sees c dead", func() bool { return statusOf(a, "c") == cluster.StatusDead })
	// c comes back on another port; once its old entry has been dead for
	// DeadNodeReclaimTime the name moves to the new address.
	cfg := fastConfig(t, "c", "127.0.0.4", a.Addr())
	c2 := start(t, cfg)
	if c2.Addr() == oldAddr {
		t.Fatalf("restarted on the same address %s; want a new port", oldAddr)
	}
	took := testwait.Until(t, 10*time.Second, "a and b see c alive at its new address", func() bool {
		ma, mb := memberOf(t, a, "c"), memberOf(t, b, "c")
		return ma.Status == cluster.StatusAlive && ma.Addr == c2.Addr() && mb.Status == cluster.StatusAlive && mb.Addr == c2.Addr()
	})
	t.Logf("name reclaimed by the new address after %v (DeadNodeReclaimTime %v)", took, cfg.DeadNodeReclaimTime)
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	a, b, c := threeNodes(t)
	events, cancel := a.Subscribe(16)
	defer cancel()
	left := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testwait.Until(t, 5*time.Second, "a and b see c left", func() bool {
		return statusOf(a, "c") == cluster.StatusLeft && statusOf(b, "c") == cluster.StatusLeft
	})
	t.Logf("leave seen by both peers after %v", time.Since(left).Round(time.Millisecond))
	if ev := nextEventFor(t, events, "c", cluster.EventLeave); ev.Member.Status != cluster.StatusLeft {
		t.Errorf("leave event status = %q, want left", ev.Member.Status)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.SetState(context.Background(), cluster.StateUp); !errors.Is(err, cluster.ErrClosed) {
		t.Errorf("SetState after Close = %v, want ErrClosed", err)
	}
}

func TestEventsForJoinUpdateLeave(t *testing.T) {
	a := start(t, fastConfig(t, "a", "127.0.0.2"))
	events, cancel := a.Subscribe(0)
	defer cancel()
	if ev := nextEventFor(t, events, "a", cluster.EventJoin); ev.Member.Addr != a.Addr() {
		t.Errorf("snapshot join of a: addr %q, want %q", ev.Member.Addr, a.Addr())
	}
	b := start(t, fastConfig(t, "b", "127.0.0.3", a.Addr()))
	ev := nextEventFor(t, events, "b", cluster.EventJoin)
	if ev.Member.Status != cluster.StatusAlive || !ev.Member.HasRole("app") {
		t.Errorf("join event = %+v, want b alive with role app", ev.Member)
	}
	if err := b.SetState(context.Background(), cluster.StateDraining); err != nil {
		t.Fatal(err)
	}
	if ev := nextEventFor(t, events, "b", cluster.EventUpdate); ev.Member.State != cluster.StateDraining {
		t.Errorf("update event state = %q, want draining", ev.Member.State)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if ev := nextEventFor(t, events, "b", cluster.EventLeave); ev.Member.Status != cluster.StatusLeft {
		t.Errorf("leave event status = %q, want left", ev.Member.Status)
	}
	cancel()
	for range events { // cancel closes the channel
	}
}

func TestSlowSubscriberDoesNotBlockGossip(t *testing.T) {
	a := start(t, fastConfig(t, "a", "127.0.0.2"))
	events, cancel := a.Subscribe(0) // never read until the end
	defer cancel()
	b := start(t, fastConfig(t, "b", "127.0.0.3", a.Addr()))
	ctx := context.Background()
	const updates = 8
	for i := range updates {
		if err := b.SetMeta(ctx, func(m *cluster.Meta) { m.Service = "s" + itoa(i) }); err != nil {
			t.Fatal(err)
		}
	}
	want := "s" + itoa(updates-1)
	testwait.Until(t, 5*time.Second, "a sees b's last update", func() bool {
		return memberOf(t, a, "b").Service == want
	})
	// The queue holds at most one event per member: a's own join and b's
	// latest, still a join because the subscriber never saw b's join.
	var got []cluster.Event
	for len(got) < 2 {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d events, want 2", len(got))
		}
	}
	if got[1].Member.Name != "b" || got[1].Kind != cluster.EventJoin || got[1].Member.Service != want {
		t.Errorf("second event = %s %s service %q, want join b service %q", got[1].Kind, got[1].Member.Name, got[1].Member.Service, want)
	}
}

func TestEncryption(t *testing.T) {
	key1, key2 := mustKey(t), mustKey(t)
	cfgA := fastConfig(t, "a", "127.0.0.2")
	cfgA.SecretKey = key1
	a := start(t, cfgA)
	cfgB := fastConfig(t, "b", "127.0.0.3", a.Addr())
	cfgB.SecretKey = key1
	b := start(t, cfgB)
	testwait.Until(t, 5*time.Second, "a and b with the same key see each other", func() bool {
		return a.NumAlive() == 2 && b.NumAlive() == 2
	})

	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"other-key", key2},
		{"no-key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastConfig(t, "x", "127.0.0.4")
			cfg.SecretKey = tc.key
			x := start(t, cfg)
			_, err := x.Join(context.Background(), a.Addr())
			if err == nil || !strings.Contains(err.Error(), "--cluster-key") {
				t.Errorf("Join with %s = %v, want an error naming --cluster-key", tc.name, err)
			}
			if n := x.NumAlive(); n != 1 {
				t.Errorf("x.NumAlive() = %d, want 1", n)
			}
			if s := statusOf(a, "x"); s != "" {
				t.Errorf("a sees x as %q, want unknown", s)
			}
		})
	}
}

func mustKey(tb testing.TB) []byte {
	tb.Helper()
	s, err := cluster.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	k, err := cluster.ParseKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestNonLoopbackNeedsKey(t *testing.T) {
	for _, tc := range []struct{ bind, advertise string }{
		{"0.0.0.0", ""},
		{"10.0.0.5", ""},
		{"127.0.0.2", "192.168.1.10"},
		{"::", ""},
	} {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.BindAddr, cfg.AdvertiseAddr = "n", tc.bind, tc.advertise
		_, err := cluster.New(cfg)
		if !errors.Is(err, cluster.ErrKeyRequired) || !strings.Contains(err.Error(), "node keygen") {
			t.Errorf("New(bind %q, advertise %q) = %v, want ErrKeyRequired saying to run node keygen", tc.bind, tc.advertise, err)
		}
		cfg.SecretKey = mustKey(t)
		if _, err := cluster.New(cfg); err != nil {
			t.Errorf("New(bind %q, advertise %q) with key = %v, want nil", tc.bind, tc.advertise, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "127.9.9.9", "::1"} {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.BindAddr = "n", ip
		if _, err := cluster.New(cfg); err != nil {
			t.Errorf("New(bind %q) without key = %v, want nil", ip, err)
		}
	}
}

func TestMetaTooLarge(t *testing.T) {
	big := cluster.Meta{Addrs: map[string]string{}}
	for i := range 30 {
		big.Addrs["role-"+itoa(i)] = "127.0.0.2:" + itoa(10000+i)
	}
	cfg := fastConfig(t, "a", "127.0.0.2")
	cfg.Meta = big
	if _, err := cluster.New(cfg); !errors.Is(err, cluster.ErrMetaTooLarge) || !strings.Contains(err.Error(), "512") {
		t.Errorf("New(big meta) = %v, want ErrMetaTooLarge naming the limit", err)
	}

	// A node with every role and every port, with long IPv6 addresses, fits.
	full := cluster.Meta{
		Roles:   []string{"edge", "lb", "app", "primary", "replica", "cache", "worker"},
		Addrs:   map[string]string{},
		Group:   "comments",
		Service: "comments",
		State:   cluster.StateDraining,
	}
	for _, k := range []string{"edge", "lb", "app", "store", "cache", "nats", "nats-cluster", "admin", "gossip"} {
		full.Addrs[k] = "[fd00:1234:5678:9abc::101]:65535"
	}
	cfg.Meta = full
	a, err := cluster.New(cfg)
	if err != nil {
		t.Fatalf("New(full meta) = %v, want nil", err)
	}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	err = a.SetMeta(context.Background(), func(m *cluster.Meta) { *m = big })
	if !errors.Is(err, cluster.ErrMetaTooLarge) {
		t.Errorf("SetMeta(big) = %v, want ErrMetaTooLarge", err)
	}
	if got := a.Local(); got.Group != "comments" || len(got.Addrs) != 9 {
		t.Errorf("Local() after refused SetMeta = %+v, want the full meta unchanged", got.Meta)
	}
}

func TestRejoinAfterAllPeersRestart(t *testing.T) {
	// b is the first node; c joins b; a joins both. Then b and c crash and
	// come back knowing only each other: a must find them through its seeds.
	b := start(t, fastConfig(t, "b", "127.0.0.3"))
	c := start(t, fastConfig(t, "c", "127.0.0.4", b.Addr()))
	bAddr, cAddr := b.Addr(), c.Addr()
	a := start(t, fastConfig(t, "a", "127.0.0.2", bAddr, cAddr))
	testwait.Until(t, 5*time.Second, "three alive", func() bool { return a.NumAlive() == 3 && b.NumAlive() == 3 })

	for _, n := range []*cluster.Cluster{b, c} {
		if err := n.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 10*time.Second, "a sees b and c dead", func() bool {
		return statusOf(a, "b") == cluster.StatusDead && statusOf(a, "c") == cluster.StatusDead
	})

	cfgB := fastConfig(t, "b", "127.0.0.3")
	cfgB.BindPort = port(t, bAddr)
	b2 := start(t, cfgB)
	cfgC := fastConfig(t, "c", "127.0.0.4", bAddr)
	cfgC.BindPort = port(t, cAddr)
	c2 := start(t, cfgC)
	took := testwait.Until(t, 10*time.Second, "a, b and c together again", func() bool {
		return a.NumAlive() == 3 && b2.NumAlive() == 3 && c2.NumAlive() == 3
	})
	t.Logf("isolated node re-joined its restarted peers after %v", took)
}

func TestStatusAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fastConfig(t, "a", "127.0.0.2")
	cfg.Registerer = reg
	a := start(t, cfg)
	b := start(t, fastConfig(t, "b", "127.0.0.3", a.Addr()))
	testwait.Until(t, 5*time.Second, "a sees b", func() bool { return a.NumAlive() == 2 })
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "a sees b dead", func() bool { return statusOf(a, "b") == cluster.StatusDead })

	raw, err := json.Marshal(a.Status())
	if err != nil {
		t.Fatalf("Marshal(Status()): %v", err)
	}
	var r cluster.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Alive != 1 || r.Dead != 1 || len(r.Members) != 2 || r.Members[1].Name != "b" || r.Members[1].Status != cluster.StatusDead {
		t.Errorf("Status() = %s, want a alive and b dead", raw)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "scalestack_cluster_members" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if got["alive"] != 1 || got["dead"] != 1 || got["left"] != 0 {
		t.Errorf("scalestack_cluster_members = %v, want alive 1, dead 1, left 0", got)
	}
}
