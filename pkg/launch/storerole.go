package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// A store node's configured role (--roles primary or replica) is only where
// it starts: with --store-failover the role moves with the lease. Its live
// role is in the node's admin /status, section store.replication, which is
// what `node ps`, `node status` and node up's failover watcher read.

// StoreRole is a store node's live replication role, as its /status says.
type StoreRole struct {
	// Group is the node's store group: "default" (or "", from a store too
	// old to say) for the one group of stages 1 to 9, the service's name
	// at stage 10.
	Group string `json:"group,omitempty"`
	// Role is "primary" or "replica".
	Role string `json:"role"`
	// Epoch is the epoch the node's log is in: a primary writes in it, a
	// replica has applied entries up to it.
	Epoch uint64 `json:"epoch"`
	// Primary is, on a replica, the primary it follows ("" when it knows
	// none).
	Primary string `json:"primary,omitempty"`
	// Lease is the majority lease as this node sees it; nil without
	// --store-failover (a primary is then primary for good).
	Lease *StoreLease `json:"lease,omitempty"`
}

// StoreLease is the lease part of StoreRole (the store's LeaseStatus).
type StoreLease struct {
	// Holder is the primary this node last granted the lease to.
	Holder string `json:"holder"`
	// Epoch is the newest epoch this node promised.
	Epoch uint64 `json:"epoch"`
	// HeardMS is how long ago this node last granted the lease.
	HeardMS int64 `json:"heard_ms"`
	// ValidForMS is, on the primary, how long it may still write.
	ValidForMS int64 `json:"valid_for_ms"`
	// TTLMS is the lease's time to live (0 from a store too old to say).
	TTLMS int64 `json:"ttl_ms"`
}

// Writable reports whether the node is a primary that may write now: one
// whose lease is still good, or any primary without failover.
func (r StoreRole) Writable() bool {
	return r.Role == "primary" && (r.Lease == nil || r.Lease.ValidForMS > 0)
}

// following returns the primary a replica follows, "" for none (a replica
// may still name itself after it lost the lease).
func (r StoreRole) following(self string) string {
	if r.Role != "replica" || r.Primary == self {
		return ""
	}
	return r.Primary
}

// Describe says the role in a person's words, for a node called self:
// "primary (epoch 3)", "replica of replica-1 (epoch 3)"; in a store group
// of its own (stage 10) it names the group: "primary of content (epoch
// 2)", "replica of content-db-2 in content (epoch 2)".
func (r StoreRole) Describe(self string) string {
	of, in := "", ""
	if g := r.NamedGroup(); g != "" {
		of, in = " of "+g, " in "+g
	}
	switch {
	case r.Role == "primary" && r.Writable():
		return fmt.Sprintf("primary%s (epoch %d)", of, r.Epoch)
	case r.Role == "primary":
		return fmt.Sprintf("primary%s without a lease (epoch %d)", of, r.Epoch)
	case r.following(self) != "":
		return fmt.Sprintf("replica of %s%s (epoch %d)", r.following(self), in, r.Epoch)
	case r.Role == "":
		return "?"
	}
	return fmt.Sprintf("%s%s, no primary known (epoch %d)", r.Role, in, r.Epoch)
}

// NamedGroup returns the node's store group when it is one of its own
// (stage 10), "" for the one group of stages 1 to 9.
func (r StoreRole) NamedGroup() string {
	if r.Group == "default" {
		return ""
	}
	return r.Group
}

// IsStoreNode reports whether roles include a store role.
func IsStoreNode(roles []string) bool {
	return slices.Contains(roles, "primary") || slices.Contains(roles, "replica")
}

// FetchStoreRole reads the live store role of the node called name from
// its admin /status at admin (host:port), presenting token when it is not
// empty (a stack of node up has no cluster key, so none). The client's
// timeout, or ctx, bounds the wait.
func FetchStoreRole(ctx context.Context, c *http.Client, admin, token, name string) (StoreRole, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	if err != nil {
		return StoreRole{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return StoreRole{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return StoreRole{}, fmt.Errorf("status of %s: %s", name, resp.Status)
	}
	var doc struct {
		Name     string `json:"name"`
		Sections struct {
			Store struct {
				Replication *StoreRole `json:"replication"`
			} `json:"store"`
		} `json:"sections"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&doc); err != nil {
		return StoreRole{}, fmt.Errorf("status of %s: %w", name, err)
	}
	// Another process may have taken a dead node's address.
	if name != "" && doc.Name != name {
		return StoreRole{}, fmt.Errorf("status of %s: %s answers at %s", name, doc.Name, admin)
	}
	if doc.Sections.Store.Replication == nil {
		return StoreRole{}, fmt.Errorf("status of %s: no store replication section", name)
	}
	return *doc.Sections.Store.Replication, nil
}

// storeRoleTimeout bounds one read of a node's /status by ps and the
// watcher: a paused node never answers, and ps should not hang on it.
const storeRoleTimeout = 800 * time.Millisecond

// FetchStoreRoles reads the live role of each named node (name → admin
// address) at once, each for at most 800ms; a node that does not answer is
// left out.
func FetchStoreRoles(ctx context.Context, c *http.Client, token string, admins map[string]string) map[string]StoreRole {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]StoreRole{}
	for name, admin := range admins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, storeRoleTimeout)
			defer cancel()
			r, err := FetchStoreRole(ctx, c, admin, token, name)
			if err != nil {
				return
			}
			mu.Lock()
			out[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
