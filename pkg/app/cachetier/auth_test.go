package cachetier_test

import (
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/cache"
)

// TestPasswordAndTLS: against a cache node that wants a password over
// TLS, a tier configured with both fills and hits; a tier without the
// password, or without TLS, never gets a hit (every lookup bypasses to the
// store) and counts errors.
func TestPasswordAndTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	nodeTLS := ca.TLS("127.0.0.1")
	cfg := cache.DefaultConfig()
	cfg.Addr, cfg.MaxBytes, cfg.Shards = "127.0.0.1:0", 16<<20, 4
	cfg.Password, cfg.TLS = "derived-cache-password", nodeTLS.Server
	srv, err := cache.New(cfg, cache.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	nodes := func() []string { return []string{srv.Addr()} }

	for _, tc := range []struct {
		name     string
		edit     func(*cachetier.Config)
		wantHits bool
	}{
		{"password and TLS", func(c *cachetier.Config) { c.Password, c.TLS = cfg.Password, nodeTLS.Client }, true},
		{"no password", func(c *cachetier.Config) { c.TLS = nodeTLS.Client }, false},
		{"wrong password", func(c *cachetier.Config) { c.Password, c.TLS = "another key's", nodeTLS.Client }, false},
		{"no TLS", func(c *cachetier.Config) { c.Password = cfg.Password }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcfg := testConfig(nodes)
			tcfg.Prefix = "t" + time.Now().Format("150405.000000") + ":"
			tc.edit(&tcfg)
			tier := openTier(t, tcfg)
			src := newSource()
			src.set("post:1", "hello")
			for range 3 {
				if got, _ := fetch(t, tier, src, "post:1"); got != "hello" {
					t.Fatalf("Fetch = %q, want hello (from the store if not from the cache)", got)
				}
			}
			st := tier.Stats()
			if gotHits := st.Hits > 0; gotHits != tc.wantHits {
				t.Fatalf("Stats = %+v: hits %d, want hits: %v", st, st.Hits, tc.wantHits)
			}
			if !tc.wantHits && st.Errors == 0 {
				t.Fatalf("Stats = %+v: no cache errors counted for a refused tier", st)
			}
		})
	}
}
