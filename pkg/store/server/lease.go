package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/internal/durable"
	"github.com/scalestack/scalestack/pkg/store"
)

// The lease: who is primary, decided by a majority of the group's own store
// nodes (Config.Failover).
//
// Every store node of the group is a voter. The primary holds a lease that
// a majority of the voters (itself included) granted; each voter that
// granted it promises not to help anyone else become primary for LeaseTTL
// on its own clock. Leadership is never decided outside the group, so the
// loss, pause or isolation of any one node costs at most one lease: there is
// no third-party leader whose own election could stall it (the design used
// to keep the lease in a JetStream bucket, whose Raft waits 4-9 s to elect a
// new stream leader; docs/replication.md says why it moved).
//
// Time never crosses machines: each side measures on its own monotonic
// clock.
//
//   - Renewal. Every LeaseTTL/4 the primary sends "renew, epoch E" to every
//     store node it knows. A voter grants it unless it has promised a newer
//     epoch, and from the moment it grants refuses every vote for LeaseTTL
//     (it "heard" the primary). With a majority of grants, the primary may
//     write, and acknowledge writes, until LeaseTTL - LeaseMargin after it
//     SENT the renewal: before any voter of that majority would vote again.
//   - Election. A replica that has heard nothing for LeaseTTL asks the
//     voters for a pre-vote at epoch E+1 (which changes nothing anywhere),
//     and only with a majority of pre-votes for the vote itself, which each
//     voter persists (lease.json) before it answers. A voter grants a vote
//     only if it has not heard a primary within LeaseTTL, has not promised
//     that epoch or a newer one to anyone else, and the candidate's log is
//     at least as new as its own (last entry's epoch, then LSN; as Raft
//     does). With a majority of votes the candidate is primary at E+1.
//   - Why no acknowledged write is lost. With --store-sync N, a write is
//     acknowledged once N replicas have it durable; with N >= voters/2 every
//     acknowledged write is on a majority, and every majority that elects a
//     new primary holds a node that has it, which refuses a candidate with
//     an older log.
//   - Why an isolated node does not disturb the group when it comes back.
//     Its failed campaigns stop at the pre-vote, so its epoch does not run
//     ahead; the primary's next renewal reaches it with the current epoch,
//     and it follows. Votes are refused while a primary is heard, so a node
//     whose clock jumped or that was paused cannot depose a live primary.
//   - Voters. Every node's voter set is persisted with its vote. The
//     primary adds a store node it does not know yet once that node granted
//     a renewal (at most one per renewal, so a majority of the old set and
//     one of the new always overlap) and sends its set with every renewal.
//     A node is never removed from the set: a group that lost a node for
//     good still counts it.
//   - Start. A node refuses votes for LeaseTTL after it starts, since it
//     may have granted a renewal just before a crash; a replica campaigns
//     only once it knows that a primary existed (a vote on disk, or a
//     renewal heard), so only the node started as primary founds a group.

// Lease messages: POST pathLease with a leaseRequest, answered by a
// leaseAnswer. The ops:
const (
	opRenew   = "renew"   // the primary extends its lease
	opPrevote = "prevote" // would you vote for me? (changes nothing)
	opVote    = "vote"    // vote for me (persisted before the answer)
	// opTakeover tells the replica a stopping primary handed over to that
	// it has everything and should campaign now (Raft's TimeoutNow).
	opTakeover = "takeover"
)

// leaseRequest is one lease message between store nodes.
type leaseRequest struct {
	Op    string `json:"op"`
	Epoch uint64 `json:"epoch"`
	Node  string `json:"node"`
	Addr  string `json:"addr"`
	// LastEpoch and LastLSN describe a candidate's last log entry.
	LastEpoch uint64 `json:"last_epoch,omitempty"`
	LastLSN   uint64 `json:"last_lsn,omitempty"`
	// TransferFrom is set on a planned hand-over's vote: the primary that
	// stopped writing and handed over. Voters that follow it vote at once
	// instead of waiting out its lease.
	TransferFrom string `json:"transfer_from,omitempty"`
	// Voters is the primary's voter set, sent with each renewal.
	Voters map[string]string `json:"voters,omitempty"`
}

// leaseAnswer answers a leaseRequest.
type leaseAnswer struct {
	Granted bool `json:"granted"`
	// Epoch is the newest epoch the answering node knows of.
	Epoch uint64 `json:"epoch"`
	// Leader is the primary the answering node follows, if any.
	Leader     string `json:"leader,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// leaseFile is what a node keeps on disk (DATA/lease.json) so that a
// restart cannot make it vote twice in one epoch or forget a voter.
type leaseFile struct {
	// VoteEpoch is the newest epoch this node promised, VoteFor to whom.
	VoteEpoch uint64 `json:"vote_epoch"`
	VoteFor   string `json:"vote_for"`
	// Voters maps every known voter's name to its store address.
	Voters map[string]string `json:"voters"`
}

func (r *replication) ttl() time.Duration { return r.s.cfg.LeaseTTL }

func (r *replication) quorumLocked() int { return len(r.vote.Voters)/2 + 1 }

// leaseLoop renews the lease on the primary and watches for its expiry on
// the others.
func (r *replication) leaseLoop(ctx context.Context) {
	t := time.NewTicker(max(r.ttl()/15, 10*time.Millisecond))
	defer t.Stop()
	var lastRound time.Time
	for {
		r.mu.Lock()
		primary := r.primary && r.handingTo == ""
		r.mu.Unlock()
		switch {
		case primary:
			if time.Since(lastRound) >= r.ttl()/4 {
				lastRound = time.Now()
				r.renew(ctx)
			}
		case r.mayCampaign():
			r.campaign(ctx, "")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// members returns every store node this node knows: voters and the store
// nodes of membership (starting ones too), by name, without itself.
func (r *replication) members() map[string]string {
	out := map[string]string{}
	r.mu.Lock()
	for n, a := range r.vote.Voters {
		out[n] = a
	}
	r.mu.Unlock()
	for _, src := range []store.Resolver{r.s.cfg.Peers, r.s.cfg.Members} {
		if src == nil {
			continue
		}
		for _, n := range src.StoreNodes() {
			if n.Addr != "" {
				out[n.Name] = n.Addr
			}
		}
	}
	delete(out, r.s.cfg.NodeName)
	return out
}

// renew runs one renewal round of the primary.
func (r *replication) renew(ctx context.Context) {
	me := r.s.cfg.NodeName
	targets := r.members()
	r.mu.Lock()
	epoch := r.s.DB().Epoch()
	voters := cloneMap(r.vote.Voters)
	need := r.quorumLocked() - 1
	r.mu.Unlock()
	req := leaseRequest{Op: opRenew, Epoch: epoch, Node: me, Addr: r.s.Addr(), Voters: voters}
	sent := time.Now()
	res := r.ask(ctx, req, targets, voters, need)
	if res.newer != nil && res.newer.Epoch > epoch && res.newer.Leader != "" && res.newer.Leader != me {
		r.mu.Lock()
		r.setLeaderLocked(res.newer.Leader, res.newer.LeaderAddr)
		r.mu.Unlock()
		r.log.Warn("lease lost", "holder", res.newer.Leader, "epoch", res.newer.Epoch)
		r.demote(fmt.Sprintf("%s is primary at epoch %d", res.newer.Leader, res.newer.Epoch))
		return
	}
	r.mu.Lock()
	if !r.primary || r.s.DB().Epoch() != epoch {
		r.mu.Unlock()
		return
	}
	if res.voterGrants >= need {
		if d := sent.Add(r.ttl() - r.margin()); d.After(r.deadline) {
			r.deadline = d
		}
		if sent.After(r.heard) {
			r.heard = sent
		}
		r.renewFails = 0
		added := r.addVoterLocked(res.newcomers)
		r.mu.Unlock()
		if added != "" {
			n := len(voters) + 1 + strings.Count(added, ",")
			r.log.Info("lease voter added", "voter", added, "voters", n)
			if r.s.cfg.Sync < n/2 {
				// An acknowledged write is then on fewer nodes than a
				// majority, and an election can pass it by.
				r.log.Warn("--store-sync is below half the group: a failover can lose acknowledged writes", "sync", r.s.cfg.Sync, "voters", n, "want_sync", n/2)
			}
		}
		return
	}
	r.renewFails++
	left := time.Until(r.deadline)
	lapsed := left < -r.ttl()
	r.mu.Unlock()
	r.log.Warn("lease renewal failed", "granted", res.voterGrants+1, "quorum", need+1, "writes_stop_in", max(0, left).Round(time.Millisecond), "refused", res.reason)
	if lapsed {
		r.demote(fmt.Sprintf("no majority granted the lease for %v", r.ttl()))
	}
}

// addVoterLocked adds the first of names (sorted) that is not a voter yet,
// and persists the set. It returns the names added, or "".
//
// One voter at a time, so that a majority of the old set and one of the
// new always overlap, except while this primary is the only voter: nobody
// else can hold that set, so the group may grow from one to all the nodes
// that answered at once (a fresh group of three skips the fragile state of
// two voters, where losing either stops the lease).
func (r *replication) addVoterLocked(names map[string]string) string {
	keys := make([]string, 0, len(names))
	for n := range names {
		if _, ok := r.vote.Voters[n]; !ok {
			keys = append(keys, n)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	if len(r.vote.Voters) > 1 {
		keys = keys[:1]
	}
	next := r.vote
	next.Voters = cloneMap(r.vote.Voters)
	for _, k := range keys {
		next.Voters[k] = names[k]
	}
	if err := r.saveLocked(next); err != nil {
		r.log.Warn("lease: save voters", "err", err)
		return ""
	}
	return strings.Join(keys, ",")
}

// mayCampaign reports whether this replica should try to become primary:
// it has heard no primary for a lease, has been up for a lease, and knows
// a primary existed (or was started as the group's first primary).
func (r *replication) mayCampaign() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	switch {
	case r.primary, now.Before(r.nextCampaign):
		return false
	case now.Sub(r.started) < r.ttl(), now.Sub(r.heard) < r.ttl():
		return false
	}
	return r.vote.VoteEpoch > 0 || r.s.cfg.Role == RolePrimary
}

// campaign asks the voters to make this node primary at the next epoch:
// a pre-vote round, then the vote. transferFrom names the primary that
// handed over to this node (planned hand-over), else "".
func (r *replication) campaign(ctx context.Context, transferFrom string) bool {
	me := r.s.cfg.NodeName
	if transferFrom == "" && !r.freshest(ctx) {
		r.backOff()
		return false
	}
	db := r.s.DB()
	lastEpoch, _, err := db.EntryEpoch(db.LSN())
	if err != nil {
		r.log.Warn("campaign: read last entry", "err", err)
		r.backOff()
		return false
	}
	r.mu.Lock()
	epoch := max(r.vote.VoteEpoch, db.Epoch(), r.knownEpoch) + 1
	voters := cloneMap(r.vote.Voters)
	req0Voters := cloneMap(r.vote.Voters)
	need := r.quorumLocked() - 1
	r.mu.Unlock()
	delete(voters, me)
	req := leaseRequest{Op: opPrevote, Epoch: epoch, Node: me, Addr: r.s.Addr(), LastEpoch: lastEpoch, LastLSN: db.LSN(), TransferFrom: transferFrom, Voters: req0Voters}
	if res := r.ask(ctx, req, voters, voters, need); res.voterGrants < need {
		r.learn(res.newer)
		r.log.Debug("pre-vote lost", "epoch", epoch, "granted", res.voterGrants+1, "quorum", need+1, "voters", sortedKeys(voters), "refused", res.reason)
		r.backOff()
		return false
	}
	r.mu.Lock()
	if r.primary || (transferFrom == "" && time.Since(r.heard) < r.ttl()) {
		r.mu.Unlock() // a primary was heard meanwhile
		return false
	}
	err = r.saveLocked(leaseFile{VoteEpoch: epoch, VoteFor: me, Voters: r.vote.Voters})
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("campaign: persist own vote", "err", err)
		r.backOff()
		return false
	}
	req.Op = opVote
	sent := time.Now()
	res := r.ask(ctx, req, voters, voters, need)
	if res.voterGrants < need {
		r.learn(res.newer)
		r.log.Info("campaign lost", "epoch", epoch, "granted", res.voterGrants+1, "quorum", need+1, "refused", res.reason)
		r.backOff()
		return false
	}
	r.mu.Lock()
	r.heard = sent
	r.mu.Unlock()
	why := "won a majority vote"
	if transferFrom != "" {
		why = "handed over by " + transferFrom
	}
	r.log.Info("lease won", "epoch", epoch, "votes", res.voterGrants+1, "voters", len(voters)+1, "why", why)
	r.promote(epoch, sent.Add(r.ttl()-r.margin()), why)
	return true
}

// backOff spaces a failed campaign's next try by a random twentieth to a
// quarter of a lease, so that two candidates do not keep splitting the vote.
func (r *replication) backOff() {
	d := time.Duration(rand.Int64N(int64(r.ttl()/5))) + r.ttl()/20
	r.mu.Lock()
	r.nextCampaign = time.Now().Add(d)
	r.mu.Unlock()
}

// learn takes note of an answer that named a newer epoch and its primary.
func (r *replication) learn(a *leaseAnswer) {
	if a == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.Epoch > r.knownEpoch {
		r.knownEpoch = a.Epoch
	}
}

// roundResult is what one round of lease messages brought back.
type roundResult struct {
	voterGrants int               // grants from voters
	newcomers   map[string]string // grants from nodes that are not voters yet
	newer       *leaseAnswer      // the answer with the newest epoch above ours, if any
	reason      string            // one refusal's reason, for the log
}

// ask sends req to every target and returns once need voters granted it,
// every target answered, or a third of a lease passed.
func (r *replication) ask(ctx context.Context, req leaseRequest, targets, voters map[string]string, need int) roundResult {
	res := roundResult{newcomers: map[string]string{}}
	if len(targets) == 0 {
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, r.ttl()/3)
	type reply struct {
		name, addr string
		ans        leaseAnswer
		err        error
	}
	replies := make(chan reply, len(targets))
	for name, addr := range targets {
		go func() {
			ans, err := r.send(ctx, addr, req)
			replies <- reply{name, addr, ans, err}
		}()
	}
	defer cancel() // the stragglers' requests end with the round
	for range len(targets) {
		var rep reply
		select {
		case rep = <-replies:
		case <-ctx.Done():
			if res.reason == "" {
				res.reason = "no answer in time"
			}
			return res
		}
		switch {
		case rep.err != nil:
			if res.reason == "" {
				res.reason = fmt.Sprintf("%s: %v", rep.name, rep.err)
			}
		case rep.ans.Granted:
			if _, ok := voters[rep.name]; ok {
				res.voterGrants++
			} else {
				res.newcomers[rep.name] = rep.addr
			}
		default:
			res.reason = fmt.Sprintf("%s: %s", rep.name, rep.ans.Reason)
			if rep.ans.Epoch > req.Epoch && (res.newer == nil || rep.ans.Epoch > res.newer.Epoch) {
				a := rep.ans
				res.newer = &a
			}
		}
		if res.voterGrants >= need && req.Op != opRenew {
			return res
		}
	}
	return res
}

// send posts one lease message to the store node at addr.
func (r *replication) send(ctx context.Context, addr string, req leaseRequest) (leaseAnswer, error) {
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.s.peerURL(addr, pathLease), bytes.NewReader(body))
	if err != nil {
		return leaseAnswer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	r.s.authorizePeer(hr)
	resp, err := r.leaseHTTP.Do(hr)
	if err != nil {
		return leaseAnswer{}, err
	}
	defer resp.Body.Close()
	var ans leaseAnswer
	if err := peerAnswer(resp); err != nil {
		return leaseAnswer{}, err
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans); err != nil {
		return leaseAnswer{}, fmt.Errorf("lease answer: %w", err)
	}
	return ans, nil
}

// answer decides a lease message from another node.
func (r *replication) answer(req leaseRequest) leaseAnswer {
	db := r.s.DB()
	me := r.s.cfg.NodeName
	myEpoch, _, err := db.EntryEpoch(db.LSN())
	if err != nil {
		return leaseAnswer{Reason: err.Error()}
	}
	myLSN := db.LSN()
	r.mu.Lock()
	known := max(r.vote.VoteEpoch, db.Epoch(), r.knownEpoch)
	ans := leaseAnswer{Epoch: known, Leader: r.primaryName, LeaderAddr: r.primaryAddr}
	deny := func(format string, args ...any) leaseAnswer {
		ans.Reason = fmt.Sprintf(format, args...)
		return ans
	}
	now := time.Now()
	if req.Node == "" || req.Node == me {
		r.mu.Unlock()
		return deny("a lease message needs another node's name")
	}
	if req.Op == opRenew {
		if req.Epoch < known || (req.Epoch == r.vote.VoteEpoch && r.vote.VoteFor != "" && r.vote.VoteFor != req.Node) {
			r.mu.Unlock()
			return deny("epoch %d is older than %d", req.Epoch, known)
		}
		deposed := r.primary // a primary at an epoch not newer than req's
		if req.Epoch > r.vote.VoteEpoch || req.Voters != nil {
			next := leaseFile{VoteEpoch: max(req.Epoch, r.vote.VoteEpoch), VoteFor: req.Node, Voters: mergeVoters(r.vote.Voters, req.Voters, me, r.s.Addr())}
			if req.Epoch == r.vote.VoteEpoch {
				next.VoteFor = r.vote.VoteFor
			}
			if next.VoteEpoch != r.vote.VoteEpoch || !maps.Equal(next.Voters, r.vote.Voters) {
				if err := r.saveLocked(next); err != nil {
					r.mu.Unlock()
					return deny("persist: %v", err)
				}
			}
		}
		r.heard = now
		r.knownEpoch = max(r.knownEpoch, req.Epoch)
		r.setLeaderLocked(req.Node, req.Addr)
		r.mu.Unlock()
		if deposed {
			r.log.Warn("lease lost", "holder", req.Node, "epoch", req.Epoch)
			go r.demote(fmt.Sprintf("%s renews a lease at epoch %d", req.Node, req.Epoch))
		}
		ans.Granted, ans.Epoch, ans.Leader, ans.LeaderAddr = true, max(known, req.Epoch), req.Node, req.Addr
		return ans
	}
	defer r.mu.Unlock()
	if req.Op == opTakeover {
		if req.Node != r.primaryName || r.primary {
			return deny("%s is not the primary this node follows", req.Node)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for range 3 {
				if r.ctx.Err() != nil || r.campaign(r.ctx, req.Node) {
					return
				}
			}
		}()
		ans.Granted = true
		return ans
	}
	if req.Op != opPrevote && req.Op != opVote {
		return deny("unknown op %q", req.Op)
	}
	r.learnVotersLocked(req.Voters)
	if req.Epoch < known || (req.Epoch == known && !(req.Op == opVote && r.vote.VoteEpoch == req.Epoch && r.vote.VoteFor == req.Node)) {
		return deny("epoch %d is not newer than %d", req.Epoch, known)
	}
	if req.Op == opVote && req.Epoch == r.vote.VoteEpoch {
		if r.vote.VoteFor != req.Node {
			return deny("voted for %s at epoch %d", r.vote.VoteFor, req.Epoch)
		}
		// The candidate asks again (our answer was lost): same promise.
		ans.Granted, ans.Epoch = true, req.Epoch
		return ans
	}
	if up := now.Sub(r.started); up < r.ttl() {
		return deny("this node started %v ago, less than a lease", up.Round(time.Millisecond))
	}
	handover := req.TransferFrom != "" && (req.TransferFrom == r.primaryName || (req.TransferFrom == me && r.transferTo == req.Node))
	if !handover {
		if r.primary {
			return deny("this node is the primary")
		}
		// A candidate starts once it has heard nothing for a lease; the
		// voters heard the same renewal a few milliseconds apart, so they
		// accept half a margin early. Still safe: the primary stopped
		// writing a whole margin before a lease after it sent that renewal.
		if since := now.Sub(r.heard); since < r.ttl()-r.margin()/2 {
			return deny("primary %s was heard %v ago", r.primaryName, since.Round(time.Millisecond))
		}
	}
	if req.LastEpoch < myEpoch || (req.LastEpoch == myEpoch && req.LastLSN < myLSN) {
		return deny("candidate's log (epoch %d, LSN %d) is behind this node's (epoch %d, LSN %d)", req.LastEpoch, req.LastLSN, myEpoch, myLSN)
	}
	if req.Op == opPrevote {
		ans.Granted = true
		return ans
	}
	if err := r.saveLocked(leaseFile{VoteEpoch: req.Epoch, VoteFor: req.Node, Voters: r.vote.Voters}); err != nil {
		return deny("persist vote: %v", err)
	}
	r.heard = now
	r.setLeaderLocked(req.Node, req.Addr)
	ans.Granted, ans.Epoch, ans.Leader, ans.LeaderAddr = true, req.Epoch, req.Node, req.Addr
	return ans
}

// lease serves POST /v1/lease: one lease message from another store node.
func (a *api) lease(w http.ResponseWriter, r *http.Request) {
	if !a.repl.s.cfg.Failover {
		a.fail(w, fmt.Errorf("lease: this store node runs without --store-failover: %w", store.ErrInvalid))
		return
	}
	var req leaseRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		a.fail(w, fmt.Errorf("lease: bad message: %v: %w", err, store.ErrInvalid))
		return
	}
	a.reply(w, http.StatusOK, a.db.LSN(), a.repl.answer(req))
}

// learnVotersLocked adds the voters of a set another node sent (its
// candidacy, or its status) that this node did not count yet, so that a
// node that missed the primary's last renewal before the primary died still
// counts the voter the primary added last. Sets only grow, one voter at a
// time by the primary, so they form a chain and the union is its newest.
func (r *replication) learnVotersLocked(v map[string]string) {
	next := mergeVoters(r.vote.Voters, v, r.s.cfg.NodeName, r.s.Addr())
	if maps.Equal(next, r.vote.Voters) {
		return
	}
	lf := r.vote
	lf.Voters = next
	if err := r.saveLocked(lf); err != nil {
		r.log.Warn("lease: save voters", "err", err)
	}
}

// setLeaderLocked records the primary this node follows, and tells the
// follower to reconnect when it changed.
func (r *replication) setLeaderLocked(name, addr string) {
	if name == r.primaryName && addr == r.primaryAddr {
		return
	}
	if r.primaryName != name {
		r.log.Info("lease holder", "holder", name)
	}
	r.primaryName, r.primaryAddr = name, addr
	close(r.leaderCh)
	r.leaderCh = make(chan struct{})
}

// mergeVoters returns base with the voters of add, and this node.
func mergeVoters(base, add map[string]string, me, myAddr string) map[string]string {
	out := cloneMap(base)
	for n, a := range add {
		out[n] = a
	}
	out[me] = myAddr
	return out
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// leasePath is where a node keeps its vote and voters: beside the
// database, not in it, so that installing a snapshot (which replaces the
// database file) cannot roll a vote back.
func (r *replication) leasePath() string { return filepath.Join(r.s.cfg.DataDir, "lease.json") }

// loadLease reads lease.json; a missing file is a node that never voted.
func (r *replication) loadLease() (leaseFile, error) {
	var lf leaseFile
	b, err := os.ReadFile(r.leasePath())
	if errors.Is(err, os.ErrNotExist) {
		return lf, nil
	}
	if err != nil {
		return lf, fmt.Errorf("read lease state: %w", err)
	}
	if err := json.Unmarshal(b, &lf); err != nil {
		return lf, fmt.Errorf("read lease state %s: %w", r.leasePath(), err)
	}
	return lf, nil
}

// saveLocked makes lf durable (write, fsync, rename, fsync the directory)
// and then current. A vote is answered only after this returns.
func (r *replication) saveLocked(lf leaseFile) error {
	b, err := json.Marshal(lf)
	if err != nil {
		return err
	}
	err = durable.WriteFile(r.leasePath(), b, 0o600)
	if err != nil {
		return fmt.Errorf("save lease state: %w", err)
	}
	r.vote = lf
	return nil
}

// freshest reports whether no live candidate peer has applied more than
// this node (ties go to the smaller name). It spares the group a vote the
// fresher node would refuse anyway.
func (r *replication) freshest(ctx context.Context) bool {
	me, mine := r.s.cfg.NodeName, r.s.DB().LSN()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := true
	for name, addr := range r.members() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := r.peerStatus(ctx, addr)
			if err != nil || !st.Candidate || st.Lease == nil {
				return
			}
			r.mu.Lock()
			r.learnVotersLocked(st.Lease.Voters)
			counted := len(st.Lease.Voters) >= len(r.vote.Voters)
			r.mu.Unlock()
			// A peer that counts fewer voters may need the dead primary's
			// vote to win: do not wait for it.
			if counted && (st.LSN > mine || (st.LSN == mine && name < me)) {
				mu.Lock()
				ok = false
				mu.Unlock()
				r.log.Debug("not campaigning: a fresher replica is alive", "peer", name, "peer_lsn", st.LSN, "lsn", mine)
			}
		}()
	}
	wg.Wait()
	return ok
}

// peerStatus reads the replication status of the store node at addr.
func (r *replication) peerStatus(ctx context.Context, addr string) (ReplicationStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, r.ttl()/5)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.s.peerURL(addr, store.PathStatus), nil)
	if err != nil {
		return ReplicationStatus{}, err
	}
	r.s.authorizePeer(req)
	resp, err := r.leaseHTTP.Do(req)
	if err != nil {
		return ReplicationStatus{}, err
	}
	defer resp.Body.Close()
	if err := peerAnswer(resp); err != nil {
		return ReplicationStatus{}, err
	}
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
