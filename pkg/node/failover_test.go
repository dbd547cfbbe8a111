package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/node"
)

// In-process failover of a store group: the primary is killed, a replica
// takes the lease in a higher epoch, and the old primary, restarted, comes
// back as a replica of the new one. (internal/e2e does the same with real
// processes, SIGKILL and SIGSTOP, under writers.)
func TestStoreFailoverInProcess(t *testing.T) {
	tc := testcluster.New(t)
	failover := func(c *node.Config) {
		c.RoleConfig.Store.Failover = true
		c.RoleConfig.Store.Sync = 1
	}
	tc.StartGroup(failover,
		testcluster.Spec{Name: "db-1", Roles: []string{node.RolePrimary}},
		testcluster.Spec{Name: "db-2", Roles: []string{node.RoleReplica}},
		testcluster.Spec{Name: "db-3", Roles: []string{node.RoleReplica}})

	old, oldEpoch := tc.Primary(30 * time.Second)
	if old != "db-1" {
		t.Fatalf("Primary = %s, want db-1, started as primary", old)
	}
	testwait.RetryUntil(t, 30*time.Second, func() error {
		if got := tc.Replicas(); !slices.Equal(got, []string{"db-2", "db-3"}) {
			return fmt.Errorf("Replicas = %v, want [db-2 db-3]", got)
		}
		return nil
	})

	tc.Kill(old)
	now, epoch := tc.WaitForNewPrimary(old, oldEpoch, 30*time.Second)
	t.Logf("db-1 at epoch %d killed; %s took over at epoch %d", oldEpoch, now, epoch)

	tc.Restart(old)
	testwait.RetryUntil(t, 30*time.Second, func() error {
		if got := tc.Replicas(); !slices.Contains(got, old) {
			return fmt.Errorf("Replicas = %v, want the restarted %s among them", got, old)
		}
		return nil
	})
	if p, _ := tc.Primary(30 * time.Second); p != now {
		t.Fatalf("Primary after %s came back = %s, want %s still", old, p, now)
	}
}
