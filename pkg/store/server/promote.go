package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// Planned hand-over (`node promote NAME`): the operator asks replica NAME
// (POST /v1/promote); it asks the primary (POST /v1/handover?to=NAME). The
// primary stops taking writes, waits until NAME has every entry durable,
// steps down and answers; NAME then campaigns at once, naming the primary
// that handed over, and the voters that follow that primary vote without
// waiting for its lease to run out (it no longer writes). Nothing
// acknowledged can be lost: the primary wrote nothing NAME does not have.

// handoverWait bounds how long a primary waits for the new one to catch up.
const handoverWait = 5 * time.Second

func (a *api) promote(w http.ResponseWriter, r *http.Request) {
	rp := a.repl
	if !rp.s.cfg.Failover {
		a.fail(w, fmt.Errorf("this store runs without --store-failover, so its primary is fixed (stage 4 on runs with it): %w", store.ErrInvalid))
		return
	}
	if rp.isPrimary() {
		a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"primary": a.node, "epoch": a.db.Epoch()})
		return
	}
	name, addr := rp.primaryHint()
	if addr == "" {
		a.fail(w, fmt.Errorf("promote: no primary known to hand over from: %w", store.ErrUnavailable))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), handoverWait+3*time.Second)
	defer cancel()
	q := url.Values{"to": {a.node}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rp.s.peerURL(addr, pathHandover+"?"+q.Encode()), nil)
	rp.s.authorizePeer(req)
	resp, err := rp.peerHTTP.Do(req)
	if err != nil {
		a.fail(w, fmt.Errorf("promote: ask primary %s: %v: %w", name, err, store.ErrUnavailable))
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.fail(w, fmt.Errorf("promote: primary %s refused the hand-over (%d): %s: %w", name, resp.StatusCode, body, store.ErrUnavailable))
		return
	}
	for !rp.campaign(ctx, name) {
		select {
		case <-ctx.Done():
			a.fail(w, fmt.Errorf("promote: %s handed over, but the voters did not elect this node: %w", name, store.ErrUnavailable))
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"primary": a.node, "epoch": a.db.Epoch(), "from": name})
}

func (a *api) handover(w http.ResponseWriter, r *http.Request) {
	to := r.URL.Query().Get("to")
	if to == "" {
		a.fail(w, fmt.Errorf("handover: want ?to=NODE: %w", store.ErrInvalid))
		return
	}
	if err := a.repl.handover(r.Context(), to); err != nil {
		a.fail(w, err)
		return
	}
	a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"handed_to": to, "lsn": a.db.LSN()})
}

// stepDown hands over to the freshest connected replica and tells it to
// take over at once: a primary that stops on purpose costs writes one
// election round, not a lease. Without a replica it just stops.
func (r *replication) stepDown(ctx context.Context) {
	r.mu.Lock()
	primary := r.primary && r.handingTo == "" && r.s.cfg.Failover
	r.mu.Unlock()
	if !primary {
		return
	}
	var to, addr string
	var best uint64
	r.peersMu.Lock()
	for _, p := range r.peers {
		p.mu.Lock()
		if to == "" || p.durable > best {
			to, addr, best = p.name, p.addr, p.durable
		}
		p.mu.Unlock()
	}
	r.peersMu.Unlock()
	if to == "" {
		return
	}
	if err := r.handover(ctx, to); err != nil {
		r.log.Warn("stopping primary: hand-over failed; the replicas take over after the lease", "to", to, "err", err)
		return
	}
	ans, err := r.send(ctx, addr, leaseRequest{Op: opTakeover, Epoch: r.s.DB().Epoch(), Node: r.s.cfg.NodeName, Addr: r.s.Addr()})
	if err == nil && !ans.Granted {
		err = errors.New(ans.Reason)
	}
	if err != nil {
		r.log.Warn("stopping primary: the new primary did not take over; the replicas elect one after the lease", "to", to, "err", err)
		return
	}
	// Stay until it won: its vote request may need this node's vote.
	for ctx.Err() == nil {
		if st, err := r.peerStatus(ctx, addr); err == nil && st.Role == RolePrimary {
			r.log.Info("stopping primary: handed over", "to", to, "epoch", st.Epoch)
			return
		}
		sleep(ctx, 10*time.Millisecond)
	}
}

// handover steps down in favour of replica `to` once it has everything.
func (r *replication) handover(ctx context.Context, to string) error {
	if !r.s.cfg.Failover {
		return fmt.Errorf("handover: no lease: %w", store.ErrInvalid)
	}
	r.mu.Lock()
	if !r.primary || r.handingTo != "" {
		err := r.notPrimaryLocked()
		r.mu.Unlock()
		return fmt.Errorf("handover: %w", err)
	}
	r.handingTo = to // the gate refuses writes from now on
	r.mu.Unlock()
	undo := func() {
		r.mu.Lock()
		r.handingTo = ""
		r.mu.Unlock()
	}
	r.log.Info("handing over", "to", to, "lsn", r.s.DB().LSN())
	// Commits already past the gate finish within a commit time; the LSN is
	// read after they are done.
	time.Sleep(50 * time.Millisecond)
	lsn := r.s.DB().LSN()
	deadline := time.Now().Add(handoverWait)
	var addr string
	for {
		r.peersMu.Lock()
		p := r.peers[to]
		ch := r.acked
		r.peersMu.Unlock()
		if p == nil {
			// Not (or no longer) streaming from us, e.g. stopping too.
			undo()
			return fmt.Errorf("handover: replica %s is not connected: %w", to, store.ErrUnavailable)
		}
		p.mu.Lock()
		done := p.durable >= lsn
		addr = p.addr
		p.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			undo()
			return fmt.Errorf("handover: replica %s did not reach LSN %d within %v: %w", to, lsn, handoverWait, store.ErrUnavailable)
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			undo()
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.transferTo = to
	r.setLeaderLocked(to, addr)
	r.primary = false // with handingTo, in one step: no window where writes pass
	r.handingTo = ""
	r.mu.Unlock()
	r.log.Info("handed over", "to", to, "lsn", lsn)
	r.demote(fmt.Sprintf("handed over to %s at LSN %d", to, lsn))
	return nil
}
