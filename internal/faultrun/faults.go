package faultrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Fault is one kind of fault of issue 14's schedule.
type Fault string

// The faults, in the order of the schedule. Each is undone Hold
// after it is made: a killed node is restarted with its data directory and
// flags, a paused one continued, a partition healed.
const (
	KillPrimary      Fault = "kill-primary"      // kill -9 of the store node that is primary
	PauseReplica     Fault = "pause-replica"     // SIGSTOP of a store replica
	PartitionPrimary Fault = "partition-primary" // the primary's host cut off the network
	KillApp          Fault = "kill-app"          // kill -9 of an app node
	KillCache        Fault = "kill-cache"        // kill -9 of the cache node
	KillWorker       Fault = "kill-worker"       // kill -9 of the worker
)

// AllFaults is the schedule.
var AllFaults = []Fault{KillPrimary, PauseReplica, PartitionPrimary, KillApp, KillCache, KillWorker}

// ParseFaults reads a comma-separated list of faults ("all" for
// AllFaults); a fault may appear more than once.
func ParseFaults(s string) ([]Fault, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(AllFaults), nil
	}
	var out []Fault
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(AllFaults, Fault(f)) {
			var names []string
			for _, a := range AllFaults {
				names = append(names, string(a))
			}
			return nil, fmt.Errorf("unknown fault %q: want some of %s, or all", f, strings.Join(names, ","))
		}
		out = append(out, Fault(f))
	}
	if len(out) == 0 {
		return nil, errors.New("no faults given")
	}
	return out, nil
}

// primaryFault reports whether f hits the primary, so that a failover (a
// new epoch) is expected of it, and none of the others.
func (f Fault) primaryFault() bool { return f == KillPrimary || f == PartitionPrimary }

// title is the fault as a column heading.
func (f Fault) title() string {
	return map[Fault]string{
		KillPrimary: "kill primary", PauseReplica: "pause replica", PartitionPrimary: "partition primary",
		KillApp: "kill app", KillCache: "kill cache", KillWorker: "kill worker",
	}[f]
}

// Event is one fault as it happened.
type Event struct {
	Fault Fault
	// Node is the node the fault hit.
	Node string
	// At is the fault's instant: just before the signal, or just after
	// the partition rule is in place.
	At time.Time
	// Epoch is the epoch of the primary the fault hit (primary faults).
	Epoch uint64
	// Back is when the fault was undone (restart, SIGCONT, heal).
	Back time.Time
	// Ready is when the node's /readyz first answered 200 after Back;
	// zero if it did not within the run.
	Ready time.Time
	// Err is why the fault could not be made or undone.
	Err string
}

// victim picks the node a fault hits. The store roles come from the store
// nodes' own status at that moment; the replica and app alternate between
// runs (by run number), since which one it is may matter (the old primary
// just restarted, say).
func (c *Cluster) victim(ctx context.Context, f Fault, run int) (*Node, uint64, error) {
	switch f {
	case KillApp:
		return c.Node([]string{"app-1", "app-2"}[(run-1)%2]), 0, nil
	case KillCache:
		return c.Node("cache-1"), 0, nil
	case KillWorker:
		return c.Node("worker-1"), 0, nil
	}
	p, epoch, err := c.primary(ctx, 10*time.Second)
	if err != nil {
		return nil, 0, err
	}
	if f.primaryFault() {
		return p, epoch, nil
	}
	var reps []*Node
	for _, n := range c.StoreNodes() {
		if n != p {
			reps = append(reps, n)
		}
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].Name < reps[j].Name })
	return reps[(run-1)%len(reps)], epoch, nil
}

// primary waits until exactly one store node says it is primary with its
// lease good, and returns it and its epoch.
func (c *Cluster) primary(ctx context.Context, timeout time.Duration) (*Node, uint64, error) {
	var p storewatch.Node
	var st server.ReplicationStatus
	err := poll.Until(ctx, timeout, pollEvery, func() (err error) {
		p, st, err = storewatch.Primary(ctx, watchedNodes(c.StoreNodes()))
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return c.Node(p.Name), st.Epoch, nil
}

// inject makes the fault on n and returns its instant.
func (c *Cluster) inject(f Fault, n *Node) (time.Time, error) {
	switch f {
	case PauseReplica:
		at := time.Now()
		return at, n.Pause()
	case PartitionPrimary:
		err := c.Partition(n)
		return time.Now(), err
	}
	at := time.Now()
	n.Kill()
	return at, nil
}

// undo brings n back from fault f.
func (c *Cluster) undo(f Fault, n *Node) error {
	switch f {
	case PauseReplica:
		return n.Resume()
	case PartitionPrimary:
		return c.Heal(n)
	}
	return c.Start(n)
}
