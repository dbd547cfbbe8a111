package cache_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/cache"
	"github.com/scalestack/scalestack/pkg/settings"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*cache.Config)
		field string // "" means valid
	}{
		{"defaults", func(*cache.Config) {}, ""},
		{"no addr", func(c *cache.Config) { c.Addr = "" }, "Addr"},
		{"no budget", func(c *cache.Config) { c.MaxBytes = 0 }, "MaxBytes"},
		{"no shards", func(c *cache.Config) { c.Shards = 0 }, "Shards"},
		{"value over shard share", func(c *cache.Config) { c.MaxBytes = 1 << 20 }, "MaxValueBytes"},
		{"few args", func(c *cache.Config) { c.MaxArgs = 2 }, "MaxArgs"},
		{"request under value", func(c *cache.Config) { c.MaxRequestBytes = 1 << 10 }, "MaxRequestBytes"},
		{"no clients", func(c *cache.Config) { c.MaxClients = 0 }, "MaxClients"},
		{"negative idle", func(c *cache.Config) { c.IdleTimeout = -time.Second }, "IdleTimeout"},
		{"long password", func(c *cache.Config) { c.Password = strings.Repeat("p", cache.MaxPasswordBytes+1) }, "Password"},
		{"negative auth timeout", func(c *cache.Config) { c.AuthTimeout = -time.Second }, "AuthTimeout"},
		{"negative auth fail delay", func(c *cache.Config) { c.AuthFailDelay = -time.Second }, "AuthFailDelay"},
		{"no expire interval", func(c *cache.Config) { c.ExpireInterval = 0 }, "ExpireInterval"},
		{"no busy poll", func(c *cache.Config) { c.BusyPoll = 0 }, ""},
		{"negative busy poll", func(c *cache.Config) { c.BusyPoll = -time.Microsecond }, "BusyPoll"},
		{"busy poll over 10ms", func(c *cache.Config) { c.BusyPoll = 11 * time.Millisecond }, "BusyPoll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cache.DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (err == nil || !strings.Contains(err.Error(), tt.field)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.field)
			}
			if _, nerr := cache.New(cfg, cache.Deps{}); (nerr == nil) != (err == nil) {
				t.Fatalf("New() error %v disagrees with Validate() %v", nerr, err)
			}
		})
	}
}

func TestSettings(t *testing.T) {
	cfg := cache.DefaultConfig()
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	settings.Register(fs, cfg.Settings())
	err := fs.Parse([]string{"--cache-max-bytes", "256MiB", "--cache-shards", "8", "--cache-password", "pw",
		"--cache-max-value-bytes", "512KiB", "--cache-max-args", "1000", "--cache-max-request-bytes", "4M",
		"--cache-max-clients", "50", "--cache-idle-timeout", "1m", "--cache-expire-interval", "50ms", "--cache-busy-poll", "20us",
		"--cache-auth-timeout", "3s", "--cache-auth-fail-delay", "250ms"})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := cache.DefaultConfig()
	want.MaxBytes, want.Shards, want.Password = 256<<20, 8, "pw"
	want.MaxValueBytes, want.MaxArgs, want.MaxRequestBytes = 512<<10, 1000, 4<<20
	want.MaxClients, want.IdleTimeout, want.ExpireInterval = 50, time.Minute, 50*time.Millisecond
	want.AuthTimeout, want.AuthFailDelay = 3*time.Second, 250*time.Millisecond
	want.BusyPoll = 20 * time.Microsecond
	if cfg != want {
		t.Fatalf("after flags: %+v, want %+v", cfg, want)
	}
	for _, bad := range []string{"lots", "-1", "1TB"} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		c := cache.DefaultConfig()
		settings.Register(fs, c.Settings())
		if err := fs.Parse([]string{"--cache-max-bytes", bad}); err == nil {
			t.Errorf("--cache-max-bytes %q accepted, want an error", bad)
		}
	}
	// The lead registers these; a role must not.
	for _, name := range []string{"cache-port", "addr", "name", "data"} {
		if fs.Lookup(name) != nil {
			t.Errorf("Settings registered --%s, which belongs to the node", name)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := startServerWith(t, cache.Deps{Metrics: reg})
	rdb := newClient(t, srv, "")
	ctx := ctxT(t)
	rdb.Set(ctx, "k", "v", 0)
	rdb.Get(ctx, "k")
	rdb.Get(ctx, "k")
	rdb.Get(ctx, "missing")
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		m := f.GetMetric()[0]
		if m.Counter != nil {
			got[f.GetName()] = m.Counter.GetValue()
		} else if m.Gauge != nil {
			got[f.GetName()] = m.Gauge.GetValue()
		}
	}
	for name, want := range map[string]float64{
		"scalestack_cache_hits_total":   2,
		"scalestack_cache_misses_total": 1,
		"scalestack_cache_keys":         1,
		"scalestack_cache_max_bytes":    64 << 20,
		"scalestack_cache_connections":  1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if got["scalestack_cache_commands_total"] < 4 || got["scalestack_cache_bytes"] <= 0 {
		t.Errorf("commands_total = %v, bytes = %v; want >= 4 and > 0",
			got["scalestack_cache_commands_total"], got["scalestack_cache_bytes"])
	}
}
