package cluster_test

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
)

func TestDefaultConfigValidates(t *testing.T) {
	cfg := cluster.DefaultConfig()
	cfg.Name = "n"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

func TestValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		field  string
		modify func(*cluster.Config)
	}{
		{"Name", func(c *cluster.Config) { c.Name = "" }},
		{"BindAddr", func(c *cluster.Config) { c.BindAddr = "localhost" }},
		{"BindPort", func(c *cluster.Config) { c.BindPort = 70000 }},
		{"AdvertiseAddr", func(c *cluster.Config) { c.AdvertiseAddr = "host" }},
		{"Seeds", func(c *cluster.Config) { c.Seeds = []string{"127.0.0.2:x"} }},
		{"SecretKey", func(c *cluster.Config) { c.SecretKey = make([]byte, 20) }},
		{"ProbeInterval", func(c *cluster.Config) { c.ProbeInterval = 0 }},
		{"ProbeTimeout", func(c *cluster.Config) { c.ProbeTimeout = c.ProbeInterval }},
		{"SuspicionMult", func(c *cluster.Config) { c.SuspicionMult = 0 }},
		{"GossipInterval", func(c *cluster.Config) { c.GossipInterval = 0 }},
		{"RejoinInterval", func(c *cluster.Config) { c.RejoinInterval = -time.Second }},
		{"Meta", func(c *cluster.Config) { c.Meta.State = "asleep" }},
	} {
		cfg := cluster.DefaultConfig()
		cfg.Name = "n"
		tc.modify(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate() with bad %s = %v, want an error naming it", tc.field, err)
		}
	}
}

func TestSeedForms(t *testing.T) {
	for _, seed := range []string{"127.0.0.2", "127.0.0.2:7946", "node-1.lan:7000", "node-1", "::1", "[::1]:7946"} {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.Seeds = "n", []string{seed}
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate() with seed %q = %v, want nil", seed, err)
		}
	}
}

func TestKeys(t *testing.T) {
	s, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := cluster.ParseKey(s)
	if err != nil || len(k) != 32 {
		t.Fatalf("ParseKey(GenerateKey()) = %d bytes, %v; want 32 bytes", len(k), err)
	}
	if s2, _ := cluster.GenerateKey(); s2 == s {
		t.Errorf("GenerateKey() twice = %q, want different keys", s)
	}
	for _, tc := range []struct {
		in   string
		size int
		bad  bool
	}{
		{"", 0, false},
		{"AAAAAAAAAAAAAAAAAAAAAA==", 16, false},
		{"AAAAAAAAAAAAAAAAAAAAAA", 16, false},
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 24, false},
		{" " + s + "\n", 32, false},
		{"AAAA", 0, true},
		{"not base64!", 0, true},
	} {
		k, err := cluster.ParseKey(tc.in)
		if tc.bad {
			if !errors.Is(err, cluster.ErrBadKey) {
				t.Errorf("ParseKey(%q) = %v, want ErrBadKey", tc.in, err)
			}
			continue
		}
		if err != nil || len(k) != tc.size {
			t.Errorf("ParseKey(%q) = %d bytes, %v; want %d bytes", tc.in, len(k), err, tc.size)
		}
	}
}

// TestFailureDetectionFormula pins the figures quoted in docs/cluster.md.
func TestFailureDetectionFormula(t *testing.T) {
	cfg := cluster.DefaultConfig()
	for _, tc := range []struct {
		n              int
		typical, worst time.Duration
	}{
		// n=3: too few nodes to expect confirmations; 0.5+0.5+2+0.1, worst waits 2 rounds.
		{3, 3100 * time.Millisecond, 3600 * time.Millisecond},
		// n=5: suspicion starts at 4*2s and shortens with 2 confirmations.
		{5, 3100 * time.Millisecond, 10600 * time.Millisecond},
		{10, 3100 * time.Millisecond, 13100 * time.Millisecond},
		// n=100: suspicion scales with log10(100)=2.
		{100, 5100 * time.Millisecond, 66100 * time.Millisecond},
	} {
		typical, worst := cfg.FailureDetection(tc.n)
		if typical != tc.typical || worst != tc.worst {
			t.Errorf("FailureDetection(%d) = %v, %v; want %v, %v", tc.n, typical, worst, tc.typical, tc.worst)
		}
	}
}

func TestAddFlags(t *testing.T) {
	cfg := cluster.DefaultConfig()
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	cfg.AddFlags(fs)
	err := fs.Parse([]string{"--gossip-probe-interval=1s", "--gossip-probe-timeout=300ms",
		"--gossip-suspicion-mult=5", "--gossip-interval=50ms", "--gossip-rejoin-interval=3s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProbeInterval != time.Second || cfg.ProbeTimeout != 300*time.Millisecond || cfg.SuspicionMult != 5 ||
		cfg.GossipInterval != 50*time.Millisecond || cfg.RejoinInterval != 3*time.Second {
		t.Errorf("after flags: %+v", cfg)
	}
}

// TestFailureDetectionAtDefaultTiming kills one of three nodes running the
// default timings and logs how long the others take to declare it dead,
// against the documented figure. It asserts only that it happens.
func TestFailureDetectionAtDefaultTiming(t *testing.T) {
	mk := func(name, ip string, seeds ...string) cluster.Config {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.Seeds = name, ip, 0, seeds
		cfg.Logger = testLogger(t, name)
		return cfg
	}
	a := start(t, mk("a", "127.0.0.2"))
	b := start(t, mk("b", "127.0.0.3", a.Addr()))
	c := start(t, mk("c", "127.0.0.4", a.Addr()))
	waitFor(t, 5*time.Second, "three alive", func() bool {
		return a.NumAlive() == 3 && b.NumAlive() == 3 && c.NumAlive() == 3
	})
	cfg := mk("c", "127.0.0.4")
	typical, worst := cfg.FailureDetection(3)
	killed := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var firstA, firstB time.Duration
	waitFor(t, 4*worst, "a and b see c dead", func() bool {
		if firstA == 0 && statusOf(a, "c") == cluster.StatusDead {
			firstA = time.Since(killed)
		}
		if firstB == 0 && statusOf(b, "c") == cluster.StatusDead {
			firstB = time.Since(killed)
		}
		return firstA > 0 && firstB > 0
	})
	t.Logf("default timing, 3 nodes: killed node dead at a after %v, at b after %v (documented typical %v, worst %v)",
		firstA.Round(time.Millisecond), firstB.Round(time.Millisecond), typical, worst)
}
