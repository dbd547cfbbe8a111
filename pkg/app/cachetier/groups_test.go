package cachetier_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/store"
)

// Two tiers of different store groups share a cache node and a prefix.
// Each keeps its own watermark; a tombstone of one group keeps the other
// from filling the key, but its LSN (of another log) is never asked of the
// other group's store: each load asks its own group's LSN only.
func TestTombstonesCompareWithinGroup(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	nodes := func() []string { return []string{c.Addr()} }
	def := openTier(t, testConfig(nodes))
	cfg := testConfig(nodes)
	cfg.Group = "content"
	content := openTier(t, cfg)
	rdb := rawClient(t, c.Addr())
	ctx := context.Background()

	var mu sync.Mutex
	var asked []store.LSNs // what each load asked, per group
	load := func(ctx context.Context) ([]byte, error) {
		_, lsns := store.ConsistencyLSNs(ctx)
		mu.Lock()
		asked = append(asked, lsns)
		mu.Unlock()
		return []byte("v"), nil
	}
	last := func() store.LSNs {
		mu.Lock()
		defer mu.Unlock()
		return asked[len(asked)-1]
	}

	def.Invalidate(ctx, 5, "other")        // the default group's log is at 5
	content.Invalidate(ctx, 900, "post:1") // content's is at 900
	if got := def.Stats().Watermark; got != 5 {
		t.Errorf("default tier's watermark = %d after content's write at 900, want 5", got)
	}
	if got := content.Stats().Watermark; got != 900 {
		t.Errorf("content tier's watermark = %d, want 900", got)
	}
	raw, err := rdb.Get(ctx, "ss2:post:1").Result()
	if err != nil || !strings.HasPrefix(raw, "T900@content.") {
		t.Fatalf("content's tombstone = %q, %v; want T900@content.<mac>", raw, err)
	}

	// The default tier meets content's tombstone: a miss, loaded at its
	// own watermark, the key left to the tombstone, nothing rejected.
	if _, r, err := def.Fetch(ctx, "post:1", load); err != nil || r != cachetier.Miss {
		t.Fatalf("default Fetch(post:1) = %v, %v; want a miss", r, err)
	}
	if got := last(); got.String() != "5" {
		t.Errorf("default tier's load behind content's tombstone asked %v, want 5 (its own group's watermark only)", got)
	}
	if got, _ := rdb.Get(ctx, "ss2:post:1").Result(); got != raw {
		t.Errorf("post:1 after the default tier's load = %q, want content's tombstone left", got)
	}
	if got := def.Stats().Rejected; got != 0 {
		t.Errorf("default tier rejected %d entries, want 0 (another group's tombstone is genuine)", got)
	}

	// The content tier asks content's LSN, and keeps the caller's LSN of
	// the default group as it was.
	cctx := store.WithConsistencyLSNs(ctx, store.Session, store.LSNsOf(store.DefaultGroup, 3))
	if _, _, err := content.Fetch(cctx, "post:1", load); err != nil {
		t.Fatal(err)
	}
	if got := last(); got.String() != "3,content=900" {
		t.Errorf("content tier's load asked %v, want 3,content=900", got)
	}
}
