package storewatch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store/server"
)

// Epochs is a record of the epochs store nodes reported: when each epoch
// was first seen, and which nodes said they were primary in it and when.
// A failover shows as a new epoch, whichever node it is seen on; a second
// failover after one fault as a second one; two nodes primary in one epoch
// would be two primaries at once. It is safe for concurrent use.
type Epochs struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	nodes  int // nodes watched, for SawAll

	mu        sync.Mutex
	first     map[uint64]time.Time                // epoch -> the poll (its send time) that first saw it
	primaries map[uint64]map[string]time.Time     // epoch -> node -> first poll that found it primary
	current   map[string]server.ReplicationStatus // node -> its last answer
	answered  map[string]bool                     // nodes that answered a poll
	answers   int                                 // answers recorded, for String
}

// NewEpochs returns an empty record, for Record by hand (tests of what
// reads one); Watch returns one that polls.
func NewEpochs() *Epochs {
	return &Epochs{cancel: func() {}, first: map[uint64]time.Time{}, primaries: map[uint64]map[string]time.Time{},
		current: map[string]server.ReplicationStatus{}, answered: map[string]bool{}}
}

// Watch polls every node's /v1/status every interval, one goroutine per
// node (a paused or cut-off node holds its own poll for the client's
// timeout without delaying the others), until Stop.
func Watch(nodes []Node, interval time.Duration) *Epochs {
	ctx, cancel := context.WithCancel(context.Background())
	w := NewEpochs()
	w.cancel, w.nodes = cancel, len(nodes)
	for _, n := range nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			t := time.NewTimer(0)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				sent := time.Now()
				if st, err := Replication(ctx, n); err == nil {
					w.Record(n.Name, st, sent)
				} else if ctx.Err() == nil {
					w.Forget(n.Name) // not a poll cut short by Stop
				}
				t.Reset(interval)
			}
		}()
	}
	return w
}

// Stop ends the polls and waits for them.
func (w *Epochs) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Record notes that node answered st to a poll sent at at.
func (w *Epochs) Record(node string, st server.ReplicationStatus, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answered[node] = true
	w.answers++
	w.current[node] = st
	if _, ok := w.first[st.Epoch]; !ok {
		w.first[st.Epoch] = at
	}
	if st.Role == server.RolePrimary {
		if w.primaries[st.Epoch] == nil {
			w.primaries[st.Epoch] = map[string]time.Time{}
		}
		if _, ok := w.primaries[st.Epoch][node]; !ok {
			w.primaries[st.Epoch][node] = at
		}
	}
}

// Forget notes that node did not answer: it no longer counts for Now.
func (w *Epochs) Forget(node string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.current, node)
}

// SawAll is nil once every watched node has answered a poll: the epochs
// seen until then are where the watch starts, not changes.
func (w *Epochs) SawAll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.answered) < w.nodes {
		return fmt.Errorf("status of %d of %d nodes polled", len(w.answered), w.nodes)
	}
	return nil
}

// FirstSeenIn returns the epochs first seen by a poll sent in [from, to),
// in order: each one a new lease, i.e. a failover or a re-election.
func (w *Epochs) FirstSeenIn(from, to time.Time) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []uint64{}
	for e, at := range w.first {
		if !at.Before(from) && at.Before(to) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Above returns the epochs seen above e, in order: after a fault at epoch
// e, one for each failover.
func (w *Epochs) Above(e uint64) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for ep := range w.first {
		if ep > e {
			out = append(out, ep)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// String describes every epoch seen, with the nodes that said primary in
// it, for a test's log: "12 answers; epoch 2: primary [db-1]; epoch 3:
// primary [db-2]".
func (w *Epochs) String() string {
	prim := w.Primaries()
	w.mu.Lock()
	defer w.mu.Unlock()
	var all []uint64
	for e := range w.first {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	parts := []string{fmt.Sprintf("%d answers", w.answers)}
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("epoch %d: primary %v", e, prim[e]))
	}
	return strings.Join(parts, "; ")
}

// MaxBefore returns the highest epoch first seen by a poll sent before t.
func (w *Epochs) MaxBefore(t time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m uint64
	for e, at := range w.first {
		if at.Before(t) {
			m = max(m, e)
		}
	}
	return m
}

// Primaries returns, per epoch, the nodes that said primary in it, sorted.
func (w *Epochs) Primaries() map[uint64][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[uint64][]string{}
	for e, nodes := range w.primaries {
		for n := range nodes {
			out[e] = append(out[e], n)
		}
		sort.Strings(out[e])
	}
	return out
}

// SaidPrimary returns when a poll first found node primary at epoch (the
// time the poll was sent).
func (w *Epochs) SaidPrimary(node string, epoch uint64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.primaries[epoch][node]
	return at, ok
}

// PrimariesAtOrAbove returns the nodes other than not that said primary at
// epoch e or later, as "name@epoch", sorted.
func (w *Epochs) PrimariesAtOrAbove(e uint64, not string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for ep, nodes := range w.primaries {
		for n := range nodes {
			if ep >= e && n != not {
				out = append(out, fmt.Sprintf("%s@%d", n, ep))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Now describes the primary as the last answers show it: "[db-2@3]", or
// "none".
func (w *Epochs) Now() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for n, st := range w.current {
		if st.Role == server.RolePrimary {
			names = append(names, fmt.Sprintf("%s@%d", n, st.Epoch))
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return fmt.Sprint(names)
}
