package cluster_test

import (
	"encoding/hex"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
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

func TestDeriveSecret(t *testing.T) {
	k1, _ := cluster.ParseKey("AAAAAAAAAAAAAAAAAAAAAA==")
	k2, _ := cluster.ParseKey("AQAAAAAAAAAAAAAAAAAAAA==")
	a := cluster.DeriveSecret(k1, "nats")
	if len(a) != 64 {
		t.Fatalf("DeriveSecret = %q, want 64 hex digits", a)
	}
	if again := cluster.DeriveSecret(slices.Clone(k1), "nats"); again != a {
		t.Errorf("same key and purpose gave %q and %q, want the same secret", a, again)
	}
	if b := cluster.DeriveSecret(k2, "nats"); b == a {
		t.Errorf("keys differing in one bit gave the same secret %q", a)
	}
	if c := cluster.DeriveSecret(k1, "other"); c == a {
		t.Errorf("two purposes gave the same secret %q", a)
	}
	if strings.Contains(a, hex.EncodeToString(k1)) {
		t.Errorf("secret %q contains the key", a)
	}
	if got := cluster.DeriveSecret(nil, "nats"); got != "" {
		t.Errorf("DeriveSecret(nil) = %q, want empty (no key, no secret)", got)
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

// TestFailureDetectionAtDefaultTiming kills one node of a cluster running the
// default timings and logs how long the others take to declare it dead,
// against the documented figures. Three nodes expect no confirmation of the
// suspicion; five nodes start the suspicion timer high and need two. It
// asserts only that death is declared.
func TestFailureDetectionAtDefaultTiming(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(itoa(n)+"-nodes", func(t *testing.T) {
			t.Parallel()
			measureDetection(t, n, 10*(n-3))
		})
	}
}

// measureDetection starts n nodes on 127.0.0.(2+offset) and up, kills the
// last and logs when each survivor declares it dead.
func measureDetection(t *testing.T, n, offset int) {
	nodes := make([]*cluster.Cluster, n)
	var cfg cluster.Config
	for i := range n {
		cfg = cluster.DefaultConfig()
		cfg.Name = "n" + itoa(i)
		cfg.BindAddr, cfg.BindPort = "127.0.0."+itoa(2+offset+i), 0
		if i > 0 {
			cfg.Seeds = []string{nodes[0].Addr()}
		}
		cfg.Logger = testLogger(t, cfg.Name)
		nodes[i] = start(t, cfg)
	}
	testwait.Until(t, 5*time.Second, "all alive", func() bool {
		for _, c := range nodes {
			if c.NumAlive() != n {
				return false
			}
		}
		return true
	})
	victim, survivors := nodes[n-1], nodes[:n-1]
	typical, worst := cfg.FailureDetection(n)
	killed := time.Now()
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	seen := make([]time.Duration, len(survivors))
	testwait.Until(t, 4*worst, "every survivor sees the victim dead", func() bool {
		all := true
		for i, c := range survivors {
			if seen[i] == 0 && statusOf(c, victim.Local().Name) == cluster.StatusDead {
				seen[i] = time.Since(killed).Round(time.Millisecond)
			}
			all = all && seen[i] > 0
		}
		return all
	})
	t.Logf("default timing, %d nodes: killed node declared dead after %v (documented typical %v, worst %v)",
		n, seen, typical, worst)
}
