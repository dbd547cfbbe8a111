package cachetier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
)

// A value written into the cache by anyone but the tier (a forgery in the
// old unsealed form, one with a made-up MAC, one sealed with another key,
// or a genuine value moved to another key) is not served: the reader gets
// the store's value, the entry is counted as rejected, and the tier does
// not overwrite it (that could undo a write's tombstone).
func TestForgedValuesAreNotServed(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	cfg := testConfig(func() []string { return []string{c.Addr()} })
	cfg.MACKey = []byte("the cluster's cache MAC key, 32 b")
	tier := openTier(t, cfg)
	other := cfg
	other.MACKey = []byte("some other cluster's key, 32 byte")
	otherTier := openTier(t, other)
	rdb := rawClient(t, c.Addr())
	ctx := context.Background()

	src := newSource()
	src.set("post:1", "genuine one")
	src.set("post:2", "genuine two")
	wantFetch(t, tier, src, "post:1", "genuine one", cachetier.Miss)
	wantFetch(t, tier, src, "post:1", "genuine one", cachetier.Hit)
	moved, err := rdb.Get(ctx, "ss2:post:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	// A value the other tier (another key) fills.
	otherSrc := newSource()
	otherSrc.set("post:3", "forged three")
	wantFetch(t, otherTier, otherSrc, "post:3", "forged three", cachetier.Miss)
	src.set("post:3", "genuine three")

	forgeries := []struct{ name, key, raw, want string }{
		{"unsealed, as entries were before", "post:1", "Dforged", "genuine one"},
		{"made-up MAC", "post:1", "D9999999999999." + strings.Repeat("A", 43) + "forged", "genuine one"},
		{"genuine value moved to another key", "post:2", moved, "genuine two"},
		{"sealed with another key", "post:3", "", "genuine three"},
		{"not ours at all", "post:1", "hello", "genuine one"},
	}
	for _, f := range forgeries {
		if f.raw != "" {
			if err := rdb.Set(ctx, "ss2:"+f.key, f.raw, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		}
		before := tier.Stats().Rejected
		wantFetch(t, tier, src, f.key, f.want, cachetier.Miss)
		if got := tier.Stats().Rejected; got != before+1 {
			t.Errorf("%s: Rejected went from %d to %d, want one more", f.name, before, got)
		}
		if f.raw != "" {
			if raw, _ := rdb.Get(ctx, "ss2:"+f.key).Result(); raw != f.raw {
				t.Errorf("%s: the tier replaced the forged entry with %q; it must leave it alone", f.name, raw)
			}
		}
	}
}

// A forged tombstone cannot make readers wait for an LSN the store never
// reaches, and a forged watermark cannot raise the tier's: both are
// ignored and counted.
func TestForgedTombstoneAndWatermarkAreIgnored(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	tier := openTier(t, testConfig(func() []string { return []string{c.Addr()} }))
	rdb := rawClient(t, c.Addr())
	ctx := context.Background()
	src := newSource()
	src.set("post:1", "v1")
	tier.Invalidate(ctx, 5, "post:9") // a genuine watermark of 5

	const huge = "18446744073709551000"
	if err := rdb.Set(ctx, "ss2:post:1", "T"+huge+"."+strings.Repeat("A", 43), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	wantFetch(t, tier, src, "post:1", "v1", cachetier.Miss)
	if got := src.lastLSN.Load(); got != 5 {
		t.Errorf("the load behind a forged tombstone asked for LSN %d, want the watermark 5", got)
	}
	if got := tier.Stats().Rejected; got != 1 {
		t.Errorf("Rejected = %d after a forged tombstone, want 1", got)
	}

	if err := rdb.Set(ctx, "ss2:wm", huge, 0).Err(); err != nil {
		t.Fatal(err)
	}
	src.set("post:2", "v2")
	wantFetch(t, tier, src, "post:2", "v2", cachetier.Miss)
	if got := tier.Stats().Watermark; got != 5 {
		t.Errorf("Watermark = %d after reading a forged one, want 5", got)
	}
	if got := tier.Stats().Rejected; got != 2 {
		t.Errorf("Rejected = %d after a forged watermark, want 2", got)
	}
	// A write puts a genuine watermark back and does not take up the forged one.
	tier.Invalidate(ctx, 6, "post:9")
	if got := tier.Stats().Watermark; got != 6 {
		t.Errorf("Watermark = %d after a write at 6 over a forged one, want 6", got)
	}
}

// A genuine value put back after its TTL (a replay of what someone read
// earlier) is not served, and not counted as forged.
func TestReplayedValueIsNotServed(t *testing.T) {
	c := startCache(t, "127.0.0.1:0")
	cfg := testConfig(func() []string { return []string{c.Addr()} })
	cfg.TTL, cfg.TombstoneTTL, cfg.Timeout = time.Second, 500*time.Millisecond, 100*time.Millisecond
	tier := openTier(t, cfg)
	rdb := rawClient(t, c.Addr())
	ctx := context.Background()
	src := newSource()
	src.set("post:1", "before")
	wantFetch(t, tier, src, "post:1", "before", cachetier.Miss)
	old, err := rdb.Get(ctx, "ss2:post:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	src.set("post:1", "after")
	testwait.Until(t, 5*time.Second, "the value to expire", func() bool {
		n, _ := rdb.Exists(ctx, "ss2:post:1").Result()
		return n == 0
	})
	if err := rdb.Set(ctx, "ss2:post:1", old, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	wantFetch(t, tier, src, "post:1", "after", cachetier.Miss)
	if got := tier.Stats().Rejected; got != 0 {
		t.Errorf("Rejected = %d for a replayed genuine value, want 0 (it is expired, not forged)", got)
	}
}
