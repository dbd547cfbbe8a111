package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// TestWholeGroupRestartElectsNewestLog: after a failover the whole group
// stops; started again, with the configured primary first, the group elects
// a node with the newest log (the configured primary's is older, and every
// voter refuses a candidate behind it), the write acknowledged after the
// failover is there, and the old primary follows and catches up. This is
// what `node up` relies on when it restarts a stage with --store-failover
// (pkg/launch, datadir.go).
func TestWholeGroupRestartElectsNewestLog(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	g.start("p", server.RolePrimary)
	waitPrimary(t, g, "p")
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	c := g.client()
	ctx := context.Background()
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := c.Txn(ctx, store.Put("posts", "before", []byte("1")))
		return err
	})
	waitConverged(t, 5*time.Second, g.server("p"), g.server("r1"), g.server("r2"))

	g.stop("p") // a crash
	var np string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if np = g.primary(); np == "" {
			return errors.New("no new primary")
		}
		return nil
	})
	testwait.RetryUntil(t, 5*time.Second, func() error {
		_, err := c.Txn(ctx, store.Put("posts", "after", []byte("2")))
		return err
	})
	other := map[string]string{"r1": "r2", "r2": "r1"}[np]
	waitConverged(t, 5*time.Second, g.server(np), g.server(other))
	g.stop(np)
	g.stop(other)

	// Everyone again, the configured primary first.
	old := g.start("p", server.RolePrimary)
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	var got string
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if got = g.primary(); got == "" {
			return errors.New("no primary after the restart")
		}
		return nil
	})
	if got == "p" {
		t.Fatalf("after a whole-group restart p, whose log is older, became primary")
	}
	if v, err := g.server(got).DB().Get(ctx, "posts", "after"); err != nil || string(v) != "2" {
		t.Fatalf("the write acknowledged after the failover, on the new primary %s: %q, %v", got, v, err)
	}
	waitConverged(t, 10*time.Second, g.server("r1"), g.server("r2"), old)
	if st := replStatus(old); st.Role != server.RoleReplica {
		t.Errorf("p's role after the restart = %s, want replica", st.Role)
	}
}
