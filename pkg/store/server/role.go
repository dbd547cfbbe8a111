package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// This file is the store node's replication role: primary or replica, the
// transitions between them, the write gate that fences a primary whose
// lease lapsed, and the replication part of /status.
//
// Who is primary: with Failover, the node a majority of the group granted
// the lease (lease.go); without, the node started with Role "primary". A replica follows the primary
// (follow.go); the primary ships its log to every replica that connects
// (ship.go) and, under Sync, acknowledges a write only once enough of them
// have it durable.

// replication is the mutable replication state of a Server.
type replication struct {
	s   *Server
	log *slog.Logger

	mu            sync.Mutex
	primary       bool      // this node takes writes
	deadline      time.Time // primary with a lease: no write is accepted or acknowledged after it (monotonic)
	epochStartLSN uint64    // the LSN at which this node's current epoch as primary began
	primaryName   string    // the primary this node knows of (itself when primary)
	primaryAddr   string
	leaderCh      chan struct{} // closed and replaced when primaryName changes: the follower reconnects
	vote          leaseFile     // this node's vote and voters, as on disk (lease.go)
	knownEpoch    uint64        // newest epoch heard of in lease messages
	heard         time.Time     // last renewal or vote this node granted (or, on the primary, its last renewal sent): no vote for anyone else before heard+LeaseTTL
	started       time.Time     // when replication started: no vote for a lease after it
	nextCampaign  time.Time     // a failed campaign's back-off
	renewFails    int           // renewal rounds in a row without a majority
	transferTo    string        // a primary that handed over: the node it votes for at once
	leaseHTTP     *http.Client  // lease messages and peer status, with short timeouts
	peerHTTP      *http.Client  // snapshots and hand-over requests to other store nodes
	shipCancel    context.CancelFunc
	term          context.Context // this primary term's context; ends on demotion
	followCancel  context.CancelFunc
	followDone    chan struct{}
	following     followStatus
	transitions   []string // last few role changes, for /status
	handingTo     string   // a primary handing over: writes wait for nobody, they are refused

	peersMu sync.Mutex
	peers   map[string]*replicaPeer // connected replicas, by node name
	acked   chan struct{}           // closed and replaced when any replica acks

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// replicaPeer is one replica streaming from this primary.
type replicaPeer struct {
	name    string
	addr    string
	since   time.Time
	mu      sync.Mutex
	sent    uint64 // last LSN sent
	applied uint64 // last LSN the replica applied
	durable uint64 // last LSN the replica has on disk
}

type followStatus struct {
	Connected  bool   `json:"connected"`
	Primary    string `json:"primary,omitempty"`
	PrimaryLSN uint64 `json:"primary_lsn"`
	Applied    uint64 `json:"applied"`
	Lag        uint64 `json:"lag"`
	Snapshots  int    `json:"snapshots"`
	Reconnects int    `json:"reconnects"`
	LastError  string `json:"last_error,omitempty"`
}

func newReplication(s *Server) *replication {
	ctx, cancel := context.WithCancel(context.Background())
	return &replication{s: s, log: s.log, peers: map[string]*replicaPeer{}, acked: make(chan struct{}),
		leaderCh: make(chan struct{}), ctx: ctx, cancel: cancel,
		leaseHTTP: &http.Client{Transport: s.peerTransport(s.cfg.LeaseTTL / 3)},
		peerHTTP:  &http.Client{Transport: s.peerTransport(2 * time.Second)}}
}

// start puts the node in its first role. Without failover the configured
// role is final; with it, the node starts as a replica and the lease loop
// promotes it when a majority grants it the lease.
func (r *replication) start() error {
	db := r.s.DB()
	db.SetWriteGate(r.gate)
	if r.s.cfg.Failover {
		lf, err := r.loadLease()
		if err != nil {
			return err
		}
		lf.Voters = mergeVoters(lf.Voters, nil, r.s.cfg.NodeName, r.s.Addr())
		r.mu.Lock()
		r.vote, r.started = lf, time.Now()
		r.mu.Unlock()
	}
	if !r.s.cfg.Failover && r.s.cfg.Role == RolePrimary {
		r.promote(db.Epoch(), time.Time{}, "configured primary without failover")
	} else {
		r.follow("starting as a replica")
	}
	if r.s.cfg.Failover {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.leaseLoop(r.ctx)
		}()
	}
	return nil
}

// stop ends every goroutine of replication, before the DB closes.
func (r *replication) stop() {
	r.cancel()
	r.mu.Lock()
	if r.shipCancel != nil {
		r.shipCancel()
	}
	fc, fd := r.followCancel, r.followDone
	r.mu.Unlock()
	if fc != nil {
		fc()
		<-fd
	}
	r.wg.Wait()
	r.leaseHTTP.CloseIdleConnections()
	r.peerHTTP.CloseIdleConnections()
}

func (r *replication) margin() time.Duration {
	if r.s.cfg.LeaseMargin > 0 {
		return r.s.cfg.LeaseMargin
	}
	return r.s.cfg.LeaseTTL / 5
}

// gate is the DB's write gate: only a primary whose lease is still good on
// its own clock writes.
func (r *replication) gate() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.primary {
		return r.notPrimaryLocked()
	}
	if r.handingTo != "" {
		return fmt.Errorf("node %s is handing over to %s: %w", r.s.cfg.NodeName, r.handingTo, store.ErrNotPrimary)
	}
	if r.s.cfg.Failover && !time.Now().Before(r.deadline) {
		return fmt.Errorf("lease not renewed in time, refusing writes until it is: %w", store.ErrNotPrimary)
	}
	return nil
}

func (r *replication) notPrimaryLocked() error {
	if r.primaryName != "" && r.primaryName != r.s.cfg.NodeName {
		return fmt.Errorf("node %s is a replica: write to %s (%s): %w", r.s.cfg.NodeName, r.primaryName, r.primaryAddr, store.ErrNotPrimary)
	}
	return fmt.Errorf("node %s is a replica and knows no primary yet: %w", r.s.cfg.NodeName, store.ErrNotPrimary)
}

// knowsPrimary reports whether this node is primary or knows the holder.
func (r *replication) knowsPrimary() bool {
	if !r.s.cfg.Failover {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.primary || (r.primaryName != "" && r.primaryName != r.s.cfg.NodeName)
}

// isPrimary reports whether this node takes writes now.
func (r *replication) isPrimary() bool { return r.gate() == nil }

// primaryHint returns the primary this node knows of, for the
// X-Store-Primary header.
func (r *replication) primaryHint() (name, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.primaryName, r.primaryAddr
}

// confirm runs after a local commit at lsn and before its acknowledgement:
// it waits for Sync replicas, then checks that the lease is still good, so
// no write is acknowledged by a primary that may have been replaced.
func (r *replication) confirm(ctx context.Context, lsn uint64) error {
	if n := r.s.cfg.Sync; n > 0 && lsn > 0 {
		if err := r.waitDurable(ctx, lsn, n); err != nil {
			return err
		}
	}
	if err := r.gate(); err != nil {
		return fmt.Errorf("committed at LSN %d but %v; not acknowledged, outcome unknown: %w", lsn, err, store.ErrUnavailable)
	}
	return nil
}

// waitDurable waits until n replicas report lsn durable, or SyncTimeout.
func (r *replication) waitDurable(ctx context.Context, lsn uint64, n int) error {
	t := time.NewTimer(r.s.cfg.SyncTimeout)
	defer t.Stop()
	for {
		r.peersMu.Lock()
		have := 0
		for _, p := range r.peers {
			p.mu.Lock()
			if p.durable >= lsn {
				have++
			}
			p.mu.Unlock()
		}
		ch := r.acked
		connected := len(r.peers)
		r.peersMu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("sync %d: LSN %d durable on %d of %d connected replicas after %v; not acknowledged, outcome unknown: %w",
				n, lsn, have, connected, r.s.cfg.SyncTimeout, store.ErrSyncTimeout)
		case <-ctx.Done():
			return fmt.Errorf("sync %d: waiting for replicas: %w", n, ctx.Err())
		}
	}
}

// promote makes this node the primary at epoch. With a lease, the caller
// has just won it and passes the time its winning request was sent.
func (r *replication) promote(epoch uint64, deadline time.Time, why string) {
	r.stopFollowing()
	db := r.s.DB()
	if err := db.SetEpoch(epoch); err != nil {
		r.log.Error("promote: raise epoch", "epoch", epoch, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.mu.Lock()
	r.primary = true
	r.deadline = deadline
	r.epochStartLSN = db.LSN()
	r.setLeaderLocked(r.s.cfg.NodeName, r.s.Addr())
	r.transferTo = ""
	r.shipCancel, r.term = cancel, ctx
	r.noteLocked(fmt.Sprintf("primary at epoch %d from LSN %d: %s", db.Epoch(), db.LSN(), why))
	r.mu.Unlock()
	r.log.Info("store role: primary", "epoch", db.Epoch(), "lsn", db.LSN(), "why", why)
}

// demote makes this node a replica that follows the primary it learns of.
func (r *replication) demote(why string) {
	r.mu.Lock()
	was := r.primary
	r.primary = false
	r.deadline = time.Time{}
	if r.shipCancel != nil {
		r.shipCancel() // drops every replica stream: they follow the new primary
		r.shipCancel = nil
	}
	r.mu.Unlock()
	if was {
		r.log.Warn("store role: replica (demoted)", "why", why, "lsn", r.s.DB().LSN(), "epoch", r.s.DB().Epoch())
	}
	r.follow(why)
}

// shipContext returns the context of this primary term's streams: it ends
// on demotion.
func (r *replication) shipContext() (context.Context, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.primary || r.shipCancel == nil {
		return nil, false
	}
	return r.term, true
}

// note records a transition for /status (the last 10).
func (r *replication) noteLocked(s string) {
	r.transitions = append(r.transitions, time.Now().UTC().Format(time.RFC3339Nano)+" "+s)
	if len(r.transitions) > 10 {
		r.transitions = r.transitions[len(r.transitions)-10:]
	}
}

// ReplicationStatus is the replication part of the store's /status.
type ReplicationStatus struct {
	// Group is the node's store group, "default" for the one group of
	// stages 1 to 9: role, epoch, LSN and lease below are that group's.
	Group         string        `json:"group"`
	Role          string        `json:"role"`
	Epoch         uint64        `json:"epoch"`
	LSN           uint64        `json:"lsn"`
	EpochStartLSN uint64        `json:"epoch_start_lsn,omitempty"`
	Primary       string        `json:"primary,omitempty"`
	PrimaryAddr   string        `json:"primary_addr,omitempty"`
	Sync          int           `json:"sync"`
	Lease         *LeaseStatus  `json:"lease,omitempty"`
	Replicas      []ReplicaLag  `json:"replicas,omitempty"`
	Following     *followStatus `json:"following,omitempty"`
	Transitions   []string      `json:"transitions,omitempty"`
	// Candidate says the node may campaign: a replica that knows a primary
	// existed. Peers compare LSNs only among candidates.
	Candidate bool `json:"candidate"`
}

// LeaseStatus is the lease as this node sees it.
type LeaseStatus struct {
	// Holder is the primary this node last granted the lease to (itself on
	// the primary).
	Holder string `json:"holder"`
	// Epoch is the newest epoch this node promised.
	Epoch uint64 `json:"epoch"`
	// Voters are the group's store nodes as this node counts them, with
	// their store addresses; a majority of them decides the lease.
	Voters map[string]string `json:"voters"`
	// Quorum is the number of voters that make a majority.
	Quorum int `json:"quorum"`
	// HeardMS is how long ago this node last granted the lease.
	HeardMS int64 `json:"heard_ms"`
	// TTLMS is the lease's time to live (--store-lease-ttl): a voter that
	// has not granted it for this long counts its holder's lease as lapsed.
	TTLMS int64 `json:"ttl_ms"`
	// ValidForMS is, on the primary, how long it may still write without a
	// renewal.
	ValidForMS int64 `json:"valid_for_ms,omitempty"`
}

// ReplicaLag is one connected replica, as its primary sees it.
type ReplicaLag struct {
	Node    string `json:"node"`
	Addr    string `json:"addr"`
	Applied uint64 `json:"applied"`
	Durable uint64 `json:"durable"`
	Lag     uint64 `json:"lag"`
}

func (r *replication) status() ReplicationStatus {
	db := r.s.DB()
	r.mu.Lock()
	st := ReplicationStatus{Group: store.GroupName(r.s.cfg.Group), Role: RoleReplica, Epoch: db.Epoch(), LSN: db.LSN(), Primary: r.primaryName,
		PrimaryAddr: r.primaryAddr, Sync: r.s.cfg.Sync, Transitions: append([]string(nil), r.transitions...)}
	if r.primary {
		st.Role = RolePrimary
		st.EpochStartLSN = r.epochStartLSN
	} else {
		f := r.following
		st.Following = &f
	}
	if r.s.cfg.Failover {
		ls := &LeaseStatus{Holder: r.primaryName, Epoch: r.vote.VoteEpoch, Quorum: r.quorumLocked(),
			Voters: cloneMap(r.vote.Voters), HeardMS: time.Since(r.heard).Milliseconds(), TTLMS: r.ttl().Milliseconds()}
		if r.primary {
			ls.ValidForMS = max(0, time.Until(r.deadline).Milliseconds())
		}
		st.Lease = ls
		st.Candidate = !r.primary && (r.vote.VoteEpoch > 0 || r.s.cfg.Role == RolePrimary)
	}
	r.mu.Unlock()
	r.peersMu.Lock()
	for _, p := range r.peers {
		p.mu.Lock()
		st.Replicas = append(st.Replicas, ReplicaLag{Node: p.name, Addr: p.addr, Applied: p.applied, Durable: p.durable, Lag: st.LSN - min(st.LSN, p.applied)})
		p.mu.Unlock()
	}
	r.peersMu.Unlock()
	sort.Slice(st.Replicas, func(i, j int) bool { return st.Replicas[i].Node < st.Replicas[j].Node })
	return st
}

// setHeaders adds the replication headers every answer carries: the epoch,
// and the primary this node knows of, so clients find it after a failover.
func (r *replication) setHeaders(h http.Header) {
	name, addr := r.primaryHint()
	if name != "" && addr != "" {
		h.Set(store.HeaderPrimary, name+"="+addr)
	}
	h.Set(store.HeaderEpoch, fmt.Sprint(r.s.DB().Epoch()))
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
