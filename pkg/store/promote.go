package store

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
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
		a.fail(w, fmt.Errorf("promote: this store runs without --failover, so its primary is fixed: %w", ErrInvalid))
		return
	}
	if rp.isPrimary() {
		a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"primary": a.node, "epoch": a.db.Epoch()})
		return
	}
	name, addr := rp.primaryHint()
	if addr == "" {
		a.fail(w, fmt.Errorf("promote: no primary known to hand over from: %w", ErrUnavailable))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), handoverWait+3*time.Second)
	defer cancel()
	q := url.Values{"to": {a.node}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+pathHandover+"?"+q.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.fail(w, fmt.Errorf("promote: ask primary %s: %v: %w", name, err, ErrUnavailable))
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.fail(w, fmt.Errorf("promote: primary %s refused the hand-over (%d): %s: %w", name, resp.StatusCode, body, ErrUnavailable))
		return
	}
	for !rp.campaign(ctx, name) {
		select {
		case <-ctx.Done():
			a.fail(w, fmt.Errorf("promote: %s handed over, but the voters did not elect this node: %w", name, ErrUnavailable))
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"primary": a.node, "epoch": a.db.Epoch(), "from": name})
}

func (a *api) handover(w http.ResponseWriter, r *http.Request) {
	to := r.URL.Query().Get("to")
	if to == "" {
		a.fail(w, fmt.Errorf("handover: want ?to=NODE: %w", ErrInvalid))
		return
	}
	if err := a.repl.handover(r.Context(), to); err != nil {
		a.fail(w, err)
		return
	}
	a.reply(w, http.StatusOK, a.db.LSN(), map[string]any{"handed_to": to, "lsn": a.db.LSN()})
}

// handover steps down in favour of replica `to` once it has everything.
func (r *replication) handover(ctx context.Context, to string) error {
	if !r.s.cfg.Failover {
		return fmt.Errorf("handover: no lease: %w", ErrInvalid)
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
		if p != nil {
			p.mu.Lock()
			done := p.durable >= lsn
			addr = p.addr
			p.mu.Unlock()
			if done {
				break
			}
		}
		if time.Now().After(deadline) {
			undo()
			return fmt.Errorf("handover: replica %s did not reach LSN %d within %v: %w", to, lsn, handoverWait, ErrUnavailable)
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
