package app_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
)

func TestOpenServeClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := app.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.NodeName = "app-1"
	a, err := app.New(cfg, app.Deps{Store: openDB(t), Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if a.Ready() {
		t.Fatalf("Ready before Open = true")
	}
	if err := a.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !a.Ready() || !strings.HasPrefix(a.Addr(), "127.0.0.1:") {
		t.Fatalf("after Open: Ready %v, Addr %q", a.Ready(), a.Addr())
	}
	resp, err := http.Get("http://" + a.Addr() + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "app-1" {
		t.Errorf("GET / = %d, X-Served-By %q; want 200, app-1", resp.StatusCode, resp.Header.Get("X-Served-By"))
	}
	st := a.Status().(app.Status)
	if st.Requests != 1 || !st.Ready {
		t.Errorf("Status = %+v, want 1 request, ready", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"scalestack_app_requests_total", "scalestack_app_request_duration_seconds"} {
		if !names[n] {
			t.Errorf("metric %s not registered (have %v)", n, names)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a.Ready() {
		t.Errorf("Ready after Close = true")
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() app.Config {
		c := app.DefaultConfig()
		c.DataDir = "/tmp/x"
		return c
	}
	for _, tc := range []struct {
		name  string
		edit  func(*app.Config)
		field string
	}{
		{"ok", func(*app.Config) {}, ""},
		{"sessions", func(c *app.Config) { c.Sessions = "sticky" }, "Sessions"},
		{"shared sessions", func(c *app.Config) { c.Sessions = "shared" }, ""},
		{"cache", func(c *app.Config) { c.Cache = "yes" }, "Cache"},
		{"cache on", func(c *app.Config) { c.Cache = "on" }, ""},
		{"cache pages", func(c *app.Config) { c.CachePages = 0 }, "CachePages"},
		{"cache tier", func(c *app.Config) { c.Cache = "on"; c.CacheTier.Timeout = 0 }, "CacheTier"},
		{"jobs", func(c *app.Config) { c.Jobs = "later" }, "Jobs"},
		{"jobs queue", func(c *app.Config) { c.Jobs = "queue" }, ""},
		{"bcrypt", func(c *app.Config) { c.BcryptCost = 99 }, "BcryptCost"},
		{"page size", func(c *app.Config) { c.PageSize = 0 }, "PageSize"},
		{"ttl", func(c *app.Config) { c.SessionTTL = time.Second }, "SessionTTL"},
		{"timeouts", func(c *app.Config) { c.ReadTimeout = 0 }, "ReadTimeout"},
		{"no outbox", func(c *app.Config) { c.DataDir = "" }, "Outbox"},
		{"short cache MAC key", func(c *app.Config) { c.CacheMACKey = []byte("short") }, "CacheMACKey"},
		{"rate limit", func(c *app.Config) { c.RateLimit = "yes" }, "RateLimit"},
		{"a limit", func(c *app.Config) { c.RateLimits.PostPerIP = app.Limit{Burst: 3} }, "post ip"},
		{"no limit", func(c *app.Config) { c.RateLimits.PostPerIP = app.Limit{} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" && err != nil {
				t.Fatalf("Validate = %v, want nil", err)
			}
			if tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestNewNeedsDeps: the dependencies are New's to check, not Validate's.
func TestNewNeedsDeps(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	if _, err := app.New(cfg, app.Deps{}); !errors.Is(err, app.ErrNoStore) {
		t.Errorf("New without a store = %v, want ErrNoStore", err)
	}
	cfg.Jobs = "queue"
	if _, err := app.New(cfg, app.Deps{Store: apptest.NewMemStore()}); !errors.Is(err, app.ErrNoJobQueue) {
		t.Errorf("New with jobs queue and no JobQueue = %v, want ErrNoJobQueue", err)
	}
}

func TestSettings(t *testing.T) {
	c := app.DefaultConfig()
	fs := flag.NewFlagSet("node run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	settings.Register(fs, c.Settings())
	if err := fs.Parse([]string{"--sessions=memory", "--jobs=inline", "--app-outbox=/tmp/out", "--app-bcrypt-cost=4", "--app-page-size=20", "--app-session-ttl=1h"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Outbox != "/tmp/out" || c.BcryptCost != 4 || c.PageSize != 20 || c.SessionTTL != time.Hour {
		t.Errorf("after flags Config = %+v", c)
	}
	if err := fs.Parse([]string{"--sessions=shared", "--cache=on", "--app-cache-pages=3", "--app-cache-ttl=1m",
		"--app-cache-tombstone-ttl=3s", "--app-cache-timeout=50ms"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Sessions != "shared" || c.Cache != "on" || c.CachePages != 3 || c.CacheTier.TTL != time.Minute ||
		c.CacheTier.TombstoneTTL != 3*time.Second || c.CacheTier.Timeout != 50*time.Millisecond {
		t.Errorf("after cache flags Config = %+v", c)
	}
	if err := fs.Parse([]string{"--app-rate-limit=off", "--app-trusted-proxies=10.0.0.0/24, 192.0.2.7"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := fmt.Sprint(c.TrustedProxies); c.RateLimit != "off" || got != "[10.0.0.0/24 192.0.2.7/32]" {
		t.Errorf("after --app-rate-limit and --app-trusted-proxies: RateLimit %q, TrustedProxies %s", c.RateLimit, got)
	}
	if err := fs.Parse([]string{"--app-trusted-proxies=lb-1"}); err == nil {
		t.Errorf("--app-trusted-proxies=lb-1 parsed; want an error (CIDRs or addresses only)")
	}
	// A mode refuses a value it does not have when the flag is parsed,
	// naming the choices.
	for _, arg := range []string{"--sessions=disk", "--reads=any", "--jobs=later", "--cache=yes", "--app-purge=1"} {
		err := fs.Parse([]string{arg})
		if err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("Parse(%s) = %v, want an error listing the choices", arg, err)
		}
	}
	for _, reserved := range []string{"app-port", "data", "name", "addr", "cache-port", "cache-password"} {
		if fs.Lookup(reserved) != nil {
			t.Errorf("Settings registers --%s, which the node owns", reserved)
		}
	}
}

func TestMemorySessionsExpire(t *testing.T) {
	ctx := context.Background()
	ms := app.NewMemorySessions()
	live := app.Session{ID: app.NewSessionID(), UserID: "u1", Handle: "a", Expires: time.Now().Add(time.Hour)}
	dead := app.Session{ID: app.NewSessionID(), UserID: "u2", Handle: "b", Expires: time.Now().Add(-time.Second)}
	for _, s := range []app.Session{live, dead} {
		if err := ms.Put(ctx, s); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	if got, err := ms.Get(ctx, live.ID); err != nil || got.UserID != "u1" {
		t.Errorf("Get(live) = %+v, %v; want u1", got, err)
	}
	if _, err := ms.Get(ctx, dead.ID); err != app.ErrNoSession {
		t.Errorf("Get(expired) error = %v, want ErrNoSession", err)
	}
	if err := ms.Delete(ctx, live.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := ms.Get(ctx, live.ID); err != app.ErrNoSession {
		t.Errorf("Get(deleted) error = %v, want ErrNoSession", err)
	}
	if a, b := app.NewSessionID(), app.NewSessionID(); a == b || len(a) < 40 {
		t.Errorf("NewSessionID gave %q and %q, want long distinct ids", a, b)
	}
}

// The session remembers the LSN of the user's last write (read-your-writes
// at the replication stage relies on it).
func TestSessionKeepsLastLSN(t *testing.T) {
	ms := app.NewMemorySessions()
	s, mem := newMemStack(t, func(c *app.Config, d *app.Deps) { d.SessionStore = ms })
	c := s.client(t)
	c.signup("lsn")
	c.post("One", "Body.")
	u, _ := url(s.Server.URL)
	var sid string
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == "blog_session" {
			sid = ck.Value
		}
	}
	sess, err := ms.Get(context.Background(), sid)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if got := sess.LastLSNs.Get(store.DefaultGroup); got == 0 || got > mem.LSN() {
		t.Errorf("LastLSNs = %v, want the default group's LSN of the last write (store at %d)", sess.LastLSNs, mem.LSN())
	}
}
