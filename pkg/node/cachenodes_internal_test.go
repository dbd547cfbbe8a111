package node

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
)

// TestCacheNodesIncludeStartingAndDraining checks the set the app's cache
// tier invalidates: a cache node that another app may already read from
// must get this app's invalidations even while this app still sees it as
// starting (or already draining), or a write here could leave another app
// serving the old value.
func TestCacheNodesIncludeStartingAndDraining(t *testing.T) {
	open := func(name, ip, state string, roles []string, addrs map[string]string, seeds ...string) *cluster.Cluster {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.Seeds = name, ip, 0, seeds
		cfg.ProbeInterval, cfg.ProbeTimeout = 100*time.Millisecond, 80*time.Millisecond
		cfg.GossipInterval, cfg.PushPullInterval = 20*time.Millisecond, time.Second
		cfg.LeaveTimeout = time.Second
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.Meta = cluster.Meta{Roles: roles, Addrs: addrs, State: state}
		c, err := cluster.New(cfg)
		if err != nil {
			t.Fatalf("cluster.New(%s): %v", name, err)
		}
		if err := c.Open(); err != nil {
			t.Fatalf("Open(%s): %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	app := open("app-1", "127.0.0.2", cluster.StateUp, []string{"app"}, map[string]string{"app": "127.0.0.2:8081"})
	open("cache-1", "127.0.0.3", cluster.StateUp, []string{"cache"}, map[string]string{"cache": "127.0.0.3:6379"}, app.Addr())
	open("cache-2", "127.0.0.4", cluster.StateStarting, []string{"cache"}, map[string]string{"cache": "127.0.0.4:6379"}, app.Addr())
	open("cache-3", "127.0.0.5", cluster.StateDraining, []string{"cache"}, map[string]string{"cache": "127.0.0.5:6379"}, app.Addr())
	open("db-1", "127.0.0.6", cluster.StateUp, []string{"primary"}, map[string]string{"store": "127.0.0.6:7070"}, app.Addr())

	n := &Node{cluster: app}
	want := []string{"127.0.0.3:6379", "127.0.0.4:6379", "127.0.0.5:6379"}
	testwait.RetryUntil(t, 5*time.Second, func() error {
		got := n.cacheNodes()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("cacheNodes() = %v, want every alive cache node %v (starting and draining included)", got, want)
		}
		return nil
	})
	if up := app.Up("cache"); len(up) != 1 {
		t.Fatalf("Up(cache) lists %d members, want 1: the test's states did not take", len(up))
	}
}
