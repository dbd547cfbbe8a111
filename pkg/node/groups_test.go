package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/store"
)

// Store groups through membership: each store node gossips its --group,
// a replica of content follows content's primary (not users', which is
// also marked primary), and a store client of a group, resolving through
// any node's membership, reads and writes that group only.
func TestStoreGroupsByMembership(t *testing.T) {
	tc := testcluster.New(t)
	inGroup := func(g string) func(*node.Config) {
		return func(c *node.Config) { c.RoleConfig.Store.Group = g }
	}
	tc.StartWith("c-1", []string{node.RolePrimary}, inGroup("content"))
	tc.StartWith("b-1", []string{node.RolePrimary}, inGroup("users"))
	tc.StartWith("c-2", []string{node.RoleReplica}, inGroup("content"))
	resolver := tc.Node("b-1")
	testwait.RetryUntil(t, 30*time.Second, func() error {
		groups := map[string]string{}
		for _, n := range resolver.StoreNodes() {
			groups[n.Name] = n.Group
		}
		if groups["c-1"] != "content" || groups["c-2"] != "content" || groups["b-1"] != "users" {
			return fmt.Errorf("store nodes by group = %v, want c-1 and c-2 in content, b-1 in users", groups)
		}
		return nil
	})

	content := store.NewClient(store.ClientConfig{Resolver: resolver, Group: "content", Timeout: 10 * time.Second})
	users := store.NewClient(store.ClientConfig{Resolver: resolver, Group: "users", Timeout: 10 * time.Second})
	t.Cleanup(func() { content.Close(); users.Close() })
	ctx := context.Background()
	if _, err := content.Txn(ctx, store.Put("posts", "1", []byte("hello"))); err != nil {
		t.Fatalf("content write: %v", err)
	}
	strong := store.WithConsistency(ctx, store.Strong, 0)
	if v, err := users.Get(strong, "posts", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("users Get(posts/1) = %q, %v; want not found", v, err)
	}
	// c-2 has it: it follows c-1, not b-1, also marked primary.
	var c2 string
	for _, n := range resolver.StoreNodes() {
		if n.Name == "c-2" {
			c2 = n.Addr
		}
	}
	testwait.RetryUntil(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + c2 + store.PathStatus)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st struct {
			Replication struct {
				Group   string `json:"group"`
				Primary string `json:"primary"`
				LSN     uint64 `json:"lsn"`
			} `json:"replication"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if r := st.Replication; r.Group != "content" || r.Primary != "c-1" || r.LSN < 1 {
			return fmt.Errorf("c-2 replication %+v, want group content, following c-1, at LSN 1", r)
		}
		return nil
	})
}
