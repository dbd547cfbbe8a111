package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A failover happens inside the store nodes, out of sight: the reaper sees
// db-1 die, not replica-1 win the lease. The watcher polls every store
// node's /status while the stack runs and says, once per change, who can
// write: the primary lost its lease, there is no primary, another node is
// the primary at a new epoch, a replica follows another primary. Each
// event is a line in node up's terminal and a JSON line in DIR/events.jsonl.
// Each store group (Node.Group: stage 10 runs one per service, the stages
// before it one) is watched on its own, and its events name it.

// EventsFile is the file in the launcher's directory where the watcher
// appends one JSON Event per line.
const EventsFile = "events.jsonl"

// Kinds of Event.
const (
	// EventPrimary: Node is the primary at Epoch (the first one seen, or a
	// new one after a failover or hand-over; AfterMS says how long after
	// the previous primary was last seen).
	EventPrimary = "primary"
	// EventLeaseLost: Node, primary at Epoch, lost its lease: it says so
	// itself, or its voters have not renewed it for a whole lease TTL.
	EventLeaseLost = "lease_lost"
	// EventNoPrimary: no store node can write; Node and Epoch are the
	// primary last seen.
	EventNoPrimary = "no_primary"
	// EventFollows: Node, a replica, follows Primary (after a failover, or
	// an old primary come back as a replica).
	EventFollows = "follows"

	// The launcher's own events, about processes and data: Node exited
	// (killed, crashed or exited), was stopped with the stack, was started
	// again, was added or removed, or starts from another node's newer
	// store data (datadir.go).
	EventExited      = "exited"
	EventStopped     = "stopped"
	EventStarted     = "started"
	EventAdded       = "added"
	EventRemoved     = "removed"
	EventDataCarried = "data_carried"
)

// Event is one change in who can write, as the watcher saw it.
type Event struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Node is the node the event is about.
	Node string `json:"node"`
	// Group is, for the watcher's events, the store group the event is
	// about; "" for the one group of stages 1 to 9.
	Group string `json:"group,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// Primary is, for EventFollows, the primary Node follows.
	Primary string `json:"primary,omitempty"`
	// Previous is, for EventPrimary, the primary before, if any.
	Previous string `json:"previous,omitempty"`
	// AfterMS is, for EventPrimary with a Previous, the milliseconds since
	// Previous was last seen as primary; for EventNoPrimary, since Node was.
	AfterMS int64 `json:"after_ms,omitempty"`
	// Detail is the line node up prints.
	Detail string `json:"detail"`
}

// storeView is one store node as one poll saw it.
type storeView struct {
	Name string
	// Up is false for a node that is not running, or that did not answer
	// two polls in a row (paused, hung).
	Up bool
	StoreRole
}

// failoverTracker turns successive polls of the store nodes into events,
// each printed once. It is not safe for concurrent use.
type failoverTracker struct {
	primary   string    // the primary last seen ("" before the first)
	epoch     uint64    // its epoch
	lastSeen  time.Time // when it was last seen as a writable primary
	lost      bool      // its lease_lost was reported
	noPrimary bool      // no_primary was reported since it was last seen
	// follows is each node's last known place: "primary" while it was the
	// primary, else the primary it follows.
	follows map[string]string
}

func newFailoverTracker() *failoverTracker {
	return &failoverTracker{follows: map[string]string{}}
}

// observe takes one poll of every store node and returns what changed.
func (t *failoverTracker) observe(now time.Time, views []storeView) []Event {
	var out []Event
	emit := func(e Event) {
		e.Time = now
		out = append(out, e)
	}
	byName := map[string]storeView{}
	var cur *storeView // the writable primary with the newest epoch
	for i, v := range views {
		byName[v.Name] = v
		if v.Up && v.Writable() && v.Epoch >= t.epoch && (cur == nil || v.Epoch > cur.Epoch) {
			cur = &views[i]
		}
	}
	same := cur != nil && cur.Name == t.primary && cur.Epoch == t.epoch
	switch {
	case same && !t.noPrimary:
		t.lastSeen = now
	case cur != nil:
		// A new primary says everything; a lease_lost in the same poll
		// would only repeat it.
		e := Event{Kind: EventPrimary, Node: cur.Name, Epoch: cur.Epoch}
		switch {
		case t.primary == "":
			e.Detail = fmt.Sprintf("%s is the primary at epoch %d", cur.Name, cur.Epoch)
		case t.primary == cur.Name:
			e.AfterMS = now.Sub(t.lastSeen).Milliseconds()
			e.Detail = fmt.Sprintf("%s is the primary again at epoch %d, %s after it was last seen as primary", cur.Name, cur.Epoch, seconds(e.AfterMS))
		default:
			e.Previous, e.AfterMS = t.primary, now.Sub(t.lastSeen).Milliseconds()
			e.Detail = fmt.Sprintf("%s is the primary at epoch %d, %s after %s was last seen as primary", cur.Name, cur.Epoch, seconds(e.AfterMS), t.primary)
		}
		emit(e)
		t.primary, t.epoch, t.lastSeen, t.lost, t.noPrimary = cur.Name, cur.Epoch, now, false, false
	case t.primary != "":
		if !t.lost {
			if why := t.leaseLost(byName); why != "" {
				emit(Event{Kind: EventLeaseLost, Node: t.primary, Epoch: t.epoch,
					Detail: fmt.Sprintf("%s lost the lease (epoch %d): %s", t.primary, t.epoch, why)})
				t.lost = true
			}
		}
		if !t.noPrimary {
			after := now.Sub(t.lastSeen).Milliseconds()
			emit(Event{Kind: EventNoPrimary, Node: t.primary, Epoch: t.epoch, AfterMS: after,
				Detail: fmt.Sprintf("no primary: %s (epoch %d) was last seen as primary %s ago; writes wait for a primary", t.primary, t.epoch, seconds(after))})
			t.noPrimary = true
		}
	}

	for _, v := range views {
		if !v.Up {
			continue
		}
		place := v.following(v.Name)
		if v.Writable() {
			place = "primary"
		}
		if place == "" {
			continue // a primary without a lease, a replica that knows no primary yet
		}
		prev := t.follows[v.Name]
		t.follows[v.Name] = place
		if prev == "" || prev == place || place == "primary" {
			continue
		}
		// A replica's log is still in the old epoch until the new primary
		// writes; the epoch it promised is the one it follows in.
		epoch := v.Epoch
		if v.Lease != nil {
			epoch = max(epoch, v.Lease.Epoch)
		}
		e := Event{Kind: EventFollows, Node: v.Name, Epoch: epoch, Primary: place}
		if prev == "primary" {
			e.Detail = fmt.Sprintf("%s is now a replica of %s", v.Name, place)
		} else {
			e.Detail = fmt.Sprintf("%s now follows %s", v.Name, place)
		}
		emit(e)
	}
	return out
}

// leaseLost says why the last primary's lease is known to be over, or "".
func (t *failoverTracker) leaseLost(byName map[string]storeView) string {
	if p, ok := byName[t.primary]; ok && p.Up {
		switch {
		case p.Role != "primary":
			return "it is a replica now"
		case p.Epoch != t.epoch:
			return fmt.Sprintf("it is at epoch %d now", p.Epoch)
		case !p.Writable():
			return "it was not renewed in time, it refuses writes"
		}
		return ""
	}
	// The primary does not answer: ask its voters.
	var voters int
	var ttl int64
	for _, v := range byName {
		if !v.Up || v.Name == t.primary || v.Lease == nil || v.Lease.TTLMS <= 0 {
			continue
		}
		if v.Lease.Epoch > t.epoch {
			return fmt.Sprintf("%s promised epoch %d to another node", v.Name, v.Lease.Epoch)
		}
		if v.Lease.Holder != t.primary {
			continue
		}
		if v.Lease.HeardMS < v.Lease.TTLMS {
			return "" // a voter renewed it within its TTL
		}
		voters++
		ttl = v.Lease.TTLMS
	}
	if voters == 0 {
		return ""
	}
	return fmt.Sprintf("no voter renewed it for its TTL of %s", seconds(ttl))
}

func seconds(ms int64) string { return fmt.Sprintf("%.1fs", float64(ms)/1000) }

// Watcher timing.
const (
	// watchInterval is how often the watcher polls the store nodes: often
	// enough to date a failover that takes about 1.5 s.
	watchInterval = 250 * time.Millisecond
	// watchMisses is how many polls in a row a running node must fail to
	// answer before it counts as gone: one slow answer under load is not a
	// lost primary.
	watchMisses = 2
)

// storeWatch is the failover watcher of one launcher.
type storeWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startWatch starts the failover watcher. It stays quiet until the stack
// is ready, and stopWatch stops it.
func (l *Launcher) startWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &storeWatch{cancel: cancel, done: make(chan struct{})}
	l.watch = w
	go func() {
		defer close(w.done)
		l.runWatch(ctx)
	}()
}

// stopWatch stops the watcher and waits for it, before the nodes are
// stopped: a stack going down is not a failover.
func (l *Launcher) stopWatch() {
	if w := l.watch; w != nil {
		w.cancel()
		<-w.done
	}
}

func (l *Launcher) runWatch(ctx context.Context) {
	client := &http.Client{}
	defer client.CloseIdleConnections()
	trackers := map[string]*failoverTracker{} // by store group
	last := map[string]storeView{}            // the last answer of each node's process
	misses := map[string]int{}
	pids := map[string]int{}
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !l.Ready() {
			continue
		}
		st := l.State()
		admins := map[string]string{}
		var names, groups []string
		groupOf := map[string]string{}
		for _, n := range st.Nodes {
			if !IsStoreNode(n.Roles) {
				continue
			}
			names = append(names, n.Name)
			groupOf[n.Name] = n.Group
			if !slices.Contains(groups, n.Group) {
				groups = append(groups, n.Group)
			}
			if !n.Running || n.PID != pids[n.Name] {
				// A new process is not what the last one said.
				delete(last, n.Name)
				misses[n.Name], pids[n.Name] = 0, n.PID
			}
			if n.Running {
				admins[n.Name] = n.Admin
			}
		}
		roles := FetchStoreRoles(ctx, client, "", admins)
		if ctx.Err() != nil {
			return
		}
		views := map[string][]storeView{}
		for _, name := range names {
			v := storeView{Name: name}
			if r, ok := roles[name]; ok {
				v.Up, v.StoreRole = true, r
				misses[name] = 0
				last[name] = v
			} else if _, running := admins[name]; running {
				misses[name]++
				if prev, ok := last[name]; ok && misses[name] < watchMisses {
					v = prev
				}
			}
			views[groupOf[name]] = append(views[groupOf[name]], v)
		}
		now := time.Now()
		for _, g := range groups {
			t := trackers[g]
			if t == nil {
				t = newFailoverTracker()
				trackers[g] = t
			}
			for _, e := range t.observe(now, views[g]) {
				l.emit(inGroup(e, g))
			}
		}
	}
}

// inGroup returns a watcher's event about store group g: its Group set and,
// for a group of its own, its line prefixed with the group ("content: ...").
func inGroup(e Event, g string) Event {
	if g != "" {
		e.Group = g
		e.Detail = g + " group: " + e.Detail
	}
	return e
}

// appendEvent appends e as one JSON line to DIR/events.jsonl. Each event
// is one write to a file opened for appending, so a reader never sees half
// a line; a failure to write is logged and the event is still printed.
func (l *Launcher) appendEvent(e Event) {
	l.eventsMu.Lock()
	defer l.eventsMu.Unlock()
	b, err := json.Marshal(e)
	if err != nil {
		l.log.Warn("events file", "err", err)
		return
	}
	f, err := os.OpenFile(filepath.Join(l.cfg.Dir, EventsFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		l.log.Warn("events file", "err", err)
	}
}

// ReadEvents reads the events of DIR/events.jsonl, oldest first; a line
// that does not parse is skipped.
func ReadEvents(dir string) ([]Event, error) {
	b, err := os.ReadFile(filepath.Join(dir, EventsFile))
	if err != nil {
		return nil, err
	}
	var out []Event
	for line := range bytes.Lines(b) {
		var e Event
		if json.Unmarshal(line, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}
