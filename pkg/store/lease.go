package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// The lease: who is primary, and the epoch.
//
// The primary holds one record in a replicated key-value store (a LeaseStore;
// in a node, a JetStream bucket across the NATS servers): its name, its store
// address and its epoch. Every change of holder goes through
// compare-and-set on the record's revision, so exactly one node wins each
// change, and every new holder raises the epoch.
//
// Time never crosses machines: each side measures on its own monotonic
// clock.
//
//   - The primary renews (compare-and-set of its own record) every
//     LeaseTTL/3. It writes, and acknowledges writes, only until
//     LeaseTTL - LeaseMargin after it SENT its last successful renewal.
//   - A replica considers the lease expired once it has seen the same
//     revision for LeaseTTL since it first READ it. It read it after the
//     primary sent it, so the primary stopped writing at least LeaseMargin
//     before any replica can take over.
//   - Only the most up-to-date live replica campaigns: before it tries, a
//     candidate asks every other store node for its status and stands back
//     if a live candidate has applied more (or as much, with a smaller name).
//
// With Sync >= 1 every acknowledged write is durable on a replica before the
// acknowledgement, and was acknowledged before the old primary's deadline,
// hence before any replica campaigns: the freshest live replica has it.

// LeaseRecord is the content of the lease.
type LeaseRecord struct {
	Holder string `json:"holder"`
	Addr   string `json:"addr"`
	Epoch  uint64 `json:"epoch"`
}

// LeaseStore is the replicated compare-and-set register the lease lives in.
type LeaseStore interface {
	// Get returns the record and its revision, or ErrNoLease.
	Get(ctx context.Context) (LeaseRecord, uint64, error)
	// Create writes the first record; ErrLeaseTaken if one exists.
	Create(ctx context.Context, rec LeaseRecord) (uint64, error)
	// Update replaces the record at revision rev; ErrLeaseTaken if the
	// revision is no longer the latest.
	Update(ctx context.Context, rec LeaseRecord, rev uint64) (uint64, error)
	// Maintain is called by the primary from time to time to keep the
	// store healthy for it (replication factor, leadership off the
	// primary's node). It may do nothing.
	Maintain(ctx context.Context, self string) error
}

// Lease errors.
var (
	// ErrNoLease: no lease record exists yet.
	ErrNoLease = errors.New("no lease")
	// ErrLeaseTaken: a compare-and-set of the lease lost.
	ErrLeaseTaken = errors.New("lease taken")
)

func (r *replication) leaseLoop(ctx context.Context) {
	tick := max(r.s.cfg.LeaseTTL/15, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastRenew time.Time
	var lastMaintain time.Time
	maintaining := make(chan struct{}, 1)
	for {
		r.mu.Lock()
		primary := r.primary
		r.mu.Unlock()
		if primary {
			if time.Since(lastRenew) >= r.s.cfg.LeaseTTL/3 {
				lastRenew = time.Now()
				r.renew(ctx)
			}
			if time.Since(lastMaintain) > 2*time.Second {
				select {
				case maintaining <- struct{}{}:
					lastMaintain = time.Now()
					r.wg.Add(1)
					go func() { // off the renew path: a slow NATS call must not delay renewals
						defer r.wg.Done()
						defer func() { <-maintaining }()
						mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						defer cancel()
						if err := r.s.cfg.Lease.Maintain(mctx, r.s.cfg.NodeName); err != nil {
							r.log.Debug("lease maintenance", "err", err)
						}
					}()
				default:
				}
			}
		} else {
			r.observe(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// renew extends the primary's lease, or demotes it if someone else holds it.
func (r *replication) renew(ctx context.Context) {
	r.mu.Lock()
	rec, rev := r.lease, r.leaseRev
	r.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, r.s.cfg.LeaseTTL/2)
	defer cancel()
	sent := time.Now()
	newRev, err := r.s.cfg.Lease.Update(cctx, rec, rev)
	switch {
	case err == nil:
		r.mu.Lock()
		if r.primary && r.lease == rec {
			r.leaseRev, r.leaseOK = newRev, time.Now()
			r.deadline = sent.Add(r.s.cfg.LeaseTTL - r.margin())
		}
		r.mu.Unlock()
	case errors.Is(err, ErrLeaseTaken):
		cur, curRev, gerr := r.s.cfg.Lease.Get(cctx)
		if gerr == nil && cur == rec {
			// Our own renewal went through but its answer was lost: adopt
			// the revision; the next renewal extends the deadline.
			r.mu.Lock()
			r.leaseRev = curRev
			r.mu.Unlock()
			return
		}
		r.mu.Lock()
		if gerr == nil {
			r.lease, r.leaseRev, r.leaseSeen = cur, curRev, time.Now()
			r.primaryName, r.primaryAddr = cur.Holder, cur.Addr
		}
		r.mu.Unlock()
		r.log.Warn("lease lost", "holder", cur.Holder, "epoch", cur.Epoch)
		r.demote(fmt.Sprintf("lease taken by %s at epoch %d", cur.Holder, cur.Epoch))
	default:
		r.mu.Lock()
		left := time.Until(r.deadline)
		r.mu.Unlock()
		r.log.Warn("lease renewal failed", "err", err, "writes_stop_in", left.Round(time.Millisecond))
	}
}

// observe reads the lease as a replica: it follows the holder, takes the
// lease when it is named holder (restart, handover), creates the first one
// if this node is the configured primary, and campaigns when it expired.
func (r *replication) observe(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, r.s.cfg.LeaseTTL/3)
	defer cancel()
	me := r.s.cfg.NodeName
	rec, rev, err := r.s.cfg.Lease.Get(cctx)
	if errors.Is(err, ErrNoLease) {
		r.mu.Lock()
		r.leaseOK = time.Now()
		r.mu.Unlock()
		if r.s.cfg.Role != RolePrimary {
			return
		}
		want := LeaseRecord{Holder: me, Addr: r.s.Addr(), Epoch: r.s.DB().Epoch() + 1}
		sent := time.Now()
		newRev, err := r.s.cfg.Lease.Create(cctx, want)
		if err != nil {
			r.log.Debug("create lease", "err", err)
			return
		}
		r.won(want, newRev, sent, "created the first lease")
		return
	}
	if err != nil {
		r.log.Debug("read lease", "err", err)
		return
	}
	now := time.Now()
	r.mu.Lock()
	r.leaseOK = now
	if rev != r.leaseRev {
		r.lease, r.leaseRev, r.leaseSeen = rec, rev, now
		if rec.Holder != me {
			if r.primaryName != rec.Holder {
				r.log.Info("lease holder", "holder", rec.Holder, "epoch", rec.Epoch, "revision", rev)
			}
			r.primaryName, r.primaryAddr = rec.Holder, rec.Addr
		}
	}
	seen := r.leaseSeen
	r.mu.Unlock()
	switch {
	case rec.Holder == me:
		// Named holder without being primary: a restart of this node, or a
		// handover to it. Take it with a new epoch.
		r.take(cctx, rec, rev, "the lease names this node")
	case time.Since(seen) >= r.s.cfg.LeaseTTL:
		if !r.freshest(cctx) {
			return
		}
		r.take(cctx, rec, rev, fmt.Sprintf("lease of %s (epoch %d) expired", rec.Holder, rec.Epoch))
	}
}

// take tries to replace rec at rev by a lease of this node with a new epoch.
func (r *replication) take(ctx context.Context, rec LeaseRecord, rev uint64, why string) {
	want := LeaseRecord{Holder: r.s.cfg.NodeName, Addr: r.s.Addr(), Epoch: max(rec.Epoch, r.s.DB().Epoch()) + 1}
	sent := time.Now()
	newRev, err := r.s.cfg.Lease.Update(ctx, want, rev)
	if err != nil {
		r.log.Debug("campaign lost", "err", err)
		return
	}
	r.won(want, newRev, sent, why)
}

func (r *replication) won(rec LeaseRecord, rev uint64, sent time.Time, why string) {
	r.mu.Lock()
	r.lease, r.leaseRev, r.leaseSeen, r.leaseOK = rec, rev, time.Now(), time.Now()
	r.mu.Unlock()
	r.log.Info("lease won", "epoch", rec.Epoch, "revision", rev, "why", why)
	r.promote(rec.Epoch, sent.Add(r.s.cfg.LeaseTTL-r.margin()), why)
}

// freshest reports whether no live candidate peer has applied more than
// this node (ties go to the smaller name).
func (r *replication) freshest(ctx context.Context) bool {
	if r.s.cfg.Peers == nil {
		return true
	}
	me, mine := r.s.cfg.NodeName, r.s.DB().LSN()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for _, n := range r.s.cfg.Peers.StoreNodes() {
		if n.Name == me || n.Addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := peerStatus(ctx, n.Addr)
			if err != nil || !st.Candidate {
				return
			}
			if st.LSN > mine || (st.LSN == mine && n.Name < me) {
				mu.Lock()
				ok = false
				mu.Unlock()
				r.log.Debug("not campaigning: a fresher replica is alive", "peer", n.Name, "peer_lsn", st.LSN, "lsn", mine)
			}
		}()
	}
	wg.Wait()
	return ok
}

// peerStatus reads the replication status of the store node at addr.
func peerStatus(ctx context.Context, addr string) (ReplicationStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+pathStatus, nil)
	if err != nil {
		return ReplicationStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ReplicationStatus{}, err
	}
	defer resp.Body.Close()
	var st struct {
		Replication *ReplicationStatus `json:"replication"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return ReplicationStatus{}, err
	}
	if st.Replication == nil {
		return ReplicationStatus{}, errors.New("no replication status")
	}
	return *st.Replication, nil
}
