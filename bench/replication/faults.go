package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/netns"
	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Failover under writes (issue 14). Every mode runs its own group of three
// store nodes (--sync 1 --failover, default --lease-ttl), each on a host of
// its own made of a network namespace (internal/netns) with the default
// ports, so that a host can be cut off the network and every mode is
// measured the same way. The writers and status polls run in this process,
// which reaches the hosts over the namespaces' bridge (and loses a
// partitioned host like everyone else).
//
// Primary faults (kill, pause, partition), `runs` times on one group:
// steady state, writers, the fault, then the time to the first write
// acknowledged by another node than the old primary at a higher epoch;
// then the old primary comes back (restarted, SIGCONT, healed), must
// follow the new one, and writes go on for -observe. Every node's status
// is polled all along. A new epoch above the new primary's, or another
// node claiming primary at it, is a second failover; one before the first
// acknowledged write (a node took the lease, then another took it from it)
// is a failover that did not stick, counted apart; so is a new epoch
// between the end of one run and the next fault (a late effect of the
// previous fault, or a failover with no fault at all).
//
// Replica faults (pause-replica, partition-replica): a replica, the two in
// turn, is paused or cut off for -replica-fault; writes that fail, the
// write latency from the fault until the replica has caught up, and any
// failover at all are counted.

var faultModes = []string{"kill", "pause", "partition", "pause-replica", "partition-replica"}

// primaryWriteTimeout is writer w's deadline per write in the primary
// modes. A writer whose request went to the lost primary learns nothing
// until its deadline: with one deadline for all, every writer retries in
// step and the first write on the new primary waits for the next common
// deadline, measuring the client's timeout rather than the store. Spread
// over 250-600 ms (8 writers), the writers fall out of step and some writer
// starts a retry every few tens of ms. What remains of the client's share
// shows beside it: the time until the new primary's own status says
// primary (polled every 100 ms). Healthy writes take a few ms here.
func primaryWriteTimeout(w int) time.Duration {
	return 250*time.Millisecond + time.Duration(w)*50*time.Millisecond
}

// replicaWriteTimeout is the writers' deadline in the replica modes:
// longer than the store's own --sync-timeout (2 s), so that a primary
// stuck waiting for replicas fails the write itself (503) and shows.
const replicaWriteTimeout = 5 * time.Second

// faults runs each mode on a fresh group and prints a summary per mode.
func (b *bench) faults(modes []string, runs int) {
	fmt.Printf("## failover under writes: %d runs per mode, 3 store nodes in network namespaces, --sync 1 --failover, default --lease-ttl, %d writers\n", runs, b.faultWriters)
	fmt.Printf("(primary modes: write deadlines %v-%v per writer; replica modes: %v; %v after the node is back; replica paused or cut off for %v)\n",
		primaryWriteTimeout(0), primaryWriteTimeout(b.faultWriters-1), replicaWriteTimeout, b.observe, b.replicaFault)
	for _, mode := range modes {
		b.faultMode(mode, runs)
	}
}

func (b *bench) faultMode(mode string, runs int) {
	progress("%s: starting three store nodes in network namespaces", mode)
	nt, ps := b.hostGroup("--sync", "1", "--failover")
	defer func() {
		stopAll(ps)
		if err := nt.Close(); err != nil {
			log.Print(err)
		}
	}()
	c := client(ps, 5*time.Second)
	defer c.Close()
	// One watch for the whole mode, so that a failover between runs (in
	// the rest before the next fault) is seen too, not only those in a
	// run's own window.
	watch := storewatch.Watch(watched(ps), 100*time.Millisecond)
	defer watch.Stop()
	if err := poll.Until(context.Background(), 30*time.Second, pollEvery, watch.SawAll); err != nil {
		log.Fatalf("%s: %v", mode, err)
	}
	since := time.Now()
	progress("%s: group up at epoch %d", mode, watch.MaxBefore(since))
	var results []runResult
	for run := 1; run <= runs; run++ {
		var r runResult
		var err error
		if strings.HasSuffix(mode, "-replica") {
			r, err = b.replicaFaultRun(mode, run, nt, ps, c, watch, since)
		} else {
			r, err = b.primaryFaultRun(mode, run, nt, ps, c, watch, since)
		}
		since = r.end
		progress("%s run %d/%d: %s", mode, run, runs, r)
		results = append(results, r)
		if err != nil {
			progress("%s: stopping after run %d: %v", mode, run, err)
			fmt.Printf("%s: stopped after run %d: %v\n", mode, run, err)
			break
		}
	}
	if strings.HasSuffix(mode, "-replica") {
		summarizeReplica(mode, results)
	} else {
		summarizePrimary(mode, results)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// hostGroup starts db-1, replica-1 and replica-2 on the hosts of a new
// netns.Net, with the default ports and a fresh cluster key.
func (b *bench) hostGroup(extra ...string) (*netns.Net, []*proc) {
	// A run that died (log.Fatal, Ctrl-C) left its hosts and maybe node
	// processes in them: they hold a subnet and CPU until removed.
	if err := netns.Cleanup("bench"); err != nil {
		log.Fatal(err)
	}
	nt, err := netns.New(context.Background(), "bench", 3)
	if err != nil {
		log.Fatal(err)
	}
	key, err := exec.Command(b.node, "keygen").Output()
	if err != nil {
		log.Fatalf("%s keygen: %v", b.node, err)
	}
	k, err := cluster.ParseKey(strings.TrimSpace(string(key)))
	if err != nil {
		log.Fatalf("%s keygen printed a bad key: %v", b.node, err)
	}
	token := cluster.DeriveSecrets(k).Store
	names := []string{"db-1", "replica-1", "replica-2"}
	roles := []string{"primary", "replica", "replica"}
	var ps []*proc
	for i := range 3 {
		h := nt.Host(i)
		addr := h.Addr()
		b.seq++
		ps = append(ps, &proc{name: names[i], role: roles[i], addr: addr, bin: b.node, host: h,
			data:  filepath.Join(b.dir, fmt.Sprintf("%s-%d", names[i], b.seq)),
			store: addr + ":7070", gossip: addr + ":7946", admin: addr + ":9090",
			flags: []string{"--addr", addr}, extra: extra,
			env: []string{"NODE_CLUSTER_KEY=" + strings.TrimSpace(string(key))}, token: token})
	}
	startGroup(ps)
	return nt, ps
}

// runResult is one run of a fault mode.
type runResult struct {
	victim string    // the node the fault hit
	at     time.Time // when (to find it in the nodes' logs, -keep)
	// primary modes
	took      time.Duration // fault -> first write acknowledged by a new primary; 0: none
	promoted  time.Duration // fault -> the new primary's status first said primary (100 ms polls)
	newNode   string
	newEpoch  uint64
	second    bool          // a failover after the one that gave newEpoch
	unstuck   int           // leases taken between the fault and newEpoch's: they acknowledged no write
	lateOld   int           // acknowledgements at the old epoch after the new primary's first
	followed  time.Duration // old node back -> following the new primary
	epochsSaw []uint64      // epochs first seen from the fault to the end of the run
	rises     int           // how far the highest epoch rose from the fault to the end of the run
	// replica modes
	maxLat, p99Lat time.Duration // writes that ended after the fault
	caughtUp       time.Duration // replica back -> its LSN reaches the primary's
	// both
	acked, failed, failedBefore int
	risesBefore                 int       // epoch rises after the previous run, before this fault
	end                         time.Time // end of the run's observation
	note                        string
}

func (r runResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %s: ", r.at.UTC().Format("15:04:05.000"))
	if r.took > 0 {
		fmt.Fprintf(&b, "%s hit; first write on %s (epoch %d) after %v (its status said primary after %v)", r.victim, r.newNode, r.newEpoch, r.took.Round(time.Millisecond), r.promoted.Round(time.Millisecond))
	} else if r.caughtUp > 0 || r.maxLat > 0 {
		fmt.Fprintf(&b, "%s hit; max write latency %v, p99 %v; caught up %v after it was back", r.victim, r.maxLat.Round(time.Millisecond), r.p99Lat.Round(time.Millisecond), r.caughtUp.Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "%s hit", r.victim)
	}
	fmt.Fprintf(&b, "; %d writes acknowledged, %d failed", r.acked, r.failed)
	if r.failedBefore > 0 {
		fmt.Fprintf(&b, " (+%d before the fault)", r.failedBefore)
	}
	if r.followed > 0 {
		fmt.Fprintf(&b, "; following again %v after it was back", r.followed.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "; epoch rose by %d (new epochs seen %v)", r.rises, r.epochsSaw)
	if r.risesBefore > 0 {
		fmt.Fprintf(&b, "; FAILOVER BEFORE THE FAULT (after the previous run): epoch rose by %d", r.risesBefore)
	}
	if r.unstuck > 0 {
		fmt.Fprintf(&b, "; %d leases before the new primary's (a failover that did not stick)", r.unstuck)
	}
	if r.second {
		b.WriteString("; SECOND FAILOVER")
	}
	if r.lateOld > 0 {
		fmt.Fprintf(&b, "; %d acknowledgements at the old epoch after the new primary's first", r.lateOld)
	}
	if r.note != "" {
		b.WriteString("; " + r.note)
	}
	return b.String()
}

// primaryFaultRun is one run of kill, pause or partition. An error means
// the run could not be measured (no steady group to start from).
func (b *bench) primaryFaultRun(mode string, run int, nt *netns.Net, ps []*proc, c *store.Client, watch *storewatch.Epochs, since time.Time) (runResult, error) {
	r := runResult{end: time.Now()}
	time.Sleep(b.rest) // steady state: see the -rest flag
	p, e0, err := steadyPrimary(ps)
	if err != nil {
		return r, err
	}
	r.victim = p.name
	ws := startWriters(c, b.faultWriters, primaryWriteTimeout, fmt.Sprintf("%s%d", mode, run))
	defer ws.stop()
	if err := ws.waitAcks(50, 30*time.Second); err != nil {
		return r, err
	}
	newAck := ws.notifyNew(p.name, e0)

	t0 := time.Now()
	r.at = t0
	switch mode {
	case "kill":
		p.kill()
	case "pause":
		p.cmd.Process.Signal(syscall.SIGSTOP)
	case "partition":
		if err := nt.Partition(p.host.Index()); err != nil {
			return r, err
		}
	}
	var firstNew write
	select {
	case firstNew = <-newAck:
		r.took, r.newNode, r.newEpoch = firstNew.end.Sub(t0), firstNew.node, firstNew.epoch
	case <-time.After(60 * time.Second):
		r.note = "no write acknowledged by a new primary within 60s"
	}

	back := time.Now()
	switch mode {
	case "kill":
		p.start(gossipsBut(ps, p))
	case "pause":
		p.cmd.Process.Signal(syscall.SIGCONT)
	case "partition":
		if err := nt.Heal(p.host.Index()); err != nil {
			return r, err
		}
	}
	followErr := poll.Until(context.Background(), 60*time.Second, pollEvery, func() error {
		st, err := status(p)
		if err != nil {
			return err
		}
		f := st.Replication.Following
		if st.Replication.Role != server.RoleReplica || f == nil || !f.Connected {
			return fmt.Errorf("%s: role %s, following %+v", p.name, st.Replication.Role, f)
		}
		return nil
	})
	if followErr == nil {
		r.followed = time.Since(back)
		time.Sleep(b.observe) // a second failover would come now: watched, not polled for
	}
	ws.stop()
	r.end = time.Now()

	writes := ws.all()
	for _, w := range writes {
		switch {
		case w.end.Before(t0) && !w.ok:
			r.failedBefore++
		case !w.ok:
			r.failed++
		default:
			r.acked++
			if r.took > 0 && w.epoch <= e0 && w.end.After(firstNew.end) {
				r.lateOld++
			}
		}
	}
	r.risesBefore = int(watch.MaxBefore(t0) - watch.MaxBefore(since))
	r.rises = int(watch.MaxBefore(r.end) - watch.MaxBefore(t0))
	r.epochsSaw = watch.FirstSeenIn(t0, r.end)
	for _, w := range writes {
		if w.ok && w.epoch > e0 && !slices.Contains(r.epochsSaw, w.epoch) {
			r.epochsSaw = append(r.epochsSaw, w.epoch)
		}
	}
	sort.Slice(r.epochsSaw, func(i, j int) bool { return r.epochsSaw[i] < r.epochsSaw[j] })
	if r.took > 0 {
		if at, ok := watch.SaidPrimary(r.newNode, r.newEpoch); ok {
			r.promoted = at.Sub(t0)
		}
		others := watch.PrimariesAtOrAbove(r.newEpoch, r.newNode)
		// Counted from the epochs, not from the polls: an epoch no poll
		// saw (a lease held for less than a poll, or written by a take
		// whose answer was lost) still changed the lease.
		r.unstuck = int(r.newEpoch - e0 - 1)
		r.second = len(others) > 0 || watch.MaxBefore(r.end) > r.newEpoch
		if len(others) > 0 {
			r.note = strings.TrimPrefix(r.note+fmt.Sprintf("; %v also said primary at epoch >= %d", others, r.newEpoch), "; ")
		}
	}
	if followErr != nil {
		r.note = strings.TrimPrefix(r.note+fmt.Sprintf("; not following 60s after it was back: %v", followErr), "; ")
	}
	// The next run starts only from a steady group (steadyPrimary), and
	// stops the mode if there is none.
	return r, nil
}

// replicaFaultRun is one run of pause-replica or partition-replica; runs
// alternate between the two replicas, since what a replica carries besides
// the log (a NATS stream leader, say) may differ between them.
func (b *bench) replicaFaultRun(mode string, run int, nt *netns.Net, ps []*proc, c *store.Client, watch *storewatch.Epochs, since time.Time) (runResult, error) {
	r := runResult{end: time.Now()}
	time.Sleep(b.rest)
	p, _, err := steadyPrimary(ps)
	if err != nil {
		return r, err
	}
	var reps []*proc
	for _, q := range ps {
		if q != p {
			reps = append(reps, q)
		}
	}
	sort.Slice(reps, func(i, j int) bool { return reps[i].name < reps[j].name })
	v := reps[(run-1)%len(reps)]
	r.victim = v.name
	ws := startWriters(c, b.faultWriters, func(int) time.Duration { return replicaWriteTimeout }, fmt.Sprintf("%s%d", mode, run))
	defer ws.stop()
	if err := ws.waitAcks(50, 30*time.Second); err != nil {
		return r, err
	}

	t0 := time.Now()
	r.at = t0
	if mode == "pause-replica" {
		v.cmd.Process.Signal(syscall.SIGSTOP)
	} else if err := nt.Partition(v.host.Index()); err != nil {
		return r, err
	}
	time.Sleep(b.replicaFault) // the fault itself: nothing to poll
	if mode == "pause-replica" {
		v.cmd.Process.Signal(syscall.SIGCONT)
	} else if err := nt.Heal(v.host.Index()); err != nil {
		return r, err
	}
	back := time.Now()
	var primaryLSN uint64
	catchErr := poll.Until(context.Background(), 60*time.Second, pollEvery, func() error {
		if primaryLSN == 0 {
			st, err := status(p)
			if err != nil {
				return err
			}
			primaryLSN = st.LSN
		}
		st, err := status(v)
		if err != nil {
			return err
		}
		f := st.Replication.Following
		if st.Replication.Role != server.RoleReplica || f == nil || !f.Connected || st.LSN < primaryLSN {
			return fmt.Errorf("%s: role %s at LSN %d (primary had %d), following %+v", v.name, st.Replication.Role, st.LSN, primaryLSN, f)
		}
		return nil
	})
	if catchErr == nil {
		r.caughtUp = time.Since(back)
		time.Sleep(b.observe)
	}
	ws.stop()
	r.end = time.Now()

	var lats []time.Duration
	for _, w := range ws.all() {
		switch {
		case w.end.Before(t0):
			if !w.ok {
				r.failedBefore++
			}
			continue
		case w.ok:
			r.acked++
		default:
			r.failed++
		}
		lats = append(lats, w.end.Sub(w.start))
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	if len(lats) > 0 {
		r.maxLat = lats[len(lats)-1]
		r.p99Lat = lats[int(0.99*float64(len(lats)-1)+0.5)]
	}
	r.risesBefore = int(watch.MaxBefore(t0) - watch.MaxBefore(since))
	r.rises = int(watch.MaxBefore(r.end) - watch.MaxBefore(t0))
	r.epochsSaw = watch.FirstSeenIn(t0, r.end)
	if catchErr != nil {
		r.note = fmt.Sprintf("not caught up 60s after it was back: %v", catchErr)
	}
	return r, nil
}

// steadyPrimary waits until exactly one node says it is primary with a
// good lease and streams to both replicas, and returns it and its epoch.
func steadyPrimary(ps []*proc) (*proc, uint64, error) {
	var primary *proc
	var epoch uint64
	err := poll.Until(context.Background(), 60*time.Second, pollEvery, func() error {
		n, rs, err := storewatch.Primary(context.Background(), watched(ps))
		if err != nil {
			return err
		}
		if len(rs.Replicas) != len(ps)-1 {
			return fmt.Errorf("primary %s streams to %d replicas", n.Name, len(rs.Replicas))
		}
		for _, p := range ps {
			if p.name == n.Name {
				primary, epoch = p, rs.Epoch
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("waiting for a steady primary: %w", err)
	}
	return primary, epoch, nil
}

// write is one write of a writer: when it was sent and answered, whether it
// was acknowledged, and by which node at which epoch.
type write struct {
	start, end time.Time
	ok         bool
	node       string
	epoch      uint64
}

// writers write new keys through one store.Client until stopped.
type writers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	acks   atomic.Int64

	mu     sync.Mutex
	writes []write
	// set by notifyNew: the first acknowledgement by another node than
	// old at an epoch above oldEpoch goes to newAck
	old      string
	oldEpoch uint64
	newAck   chan write
}

func startWriters(c *store.Client, n int, timeout func(w int) time.Duration, prefix string) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &writers{cancel: cancel}
	for w := range n {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				an := &answer{}
				wctx, wcancel := context.WithTimeout(context.WithValue(ctx, answerKey{}, an), timeout(w))
				start := time.Now()
				_, err := c.Txn(wctx, store.Put("bench", fmt.Sprintf("%s-%d-%08d", prefix, w, i), value))
				end := time.Now()
				wcancel()
				if ctx.Err() != nil {
					return // stopped mid-write: neither acknowledged nor failed
				}
				ws.record(write{start: start, end: end, ok: err == nil, node: an.node, epoch: an.epoch})
			}
		}()
	}
	return ws
}

func (ws *writers) record(w write) {
	if w.ok {
		ws.acks.Add(1)
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.writes = append(ws.writes, w)
	if ws.newAck != nil && w.ok && w.node != ws.old && w.epoch > ws.oldEpoch {
		select {
		case ws.newAck <- w:
		default:
		}
	}
}

// notifyNew returns a channel that gets the first write acknowledged from
// now on by another node than old at an epoch above oldEpoch.
func (ws *writers) notifyNew(old string, oldEpoch uint64) <-chan write {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.old, ws.oldEpoch, ws.newAck = old, oldEpoch, make(chan write, 1)
	return ws.newAck
}

func (ws *writers) waitAcks(n int64, timeout time.Duration) error {
	return poll.Until(context.Background(), timeout, pollEvery, func() error {
		if got := ws.acks.Load(); got < n {
			return fmt.Errorf("%d of %d writes acknowledged", got, n)
		}
		return nil
	})
}

func (ws *writers) stop() {
	ws.cancel()
	ws.wg.Wait()
}

func (ws *writers) all() []write {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return append([]write(nil), ws.writes...)
}

func seconds(ds []time.Duration) []float64 {
	var out []float64
	for _, d := range ds {
		out = append(out, d.Seconds())
	}
	sort.Float64s(out)
	return out
}

func summarizePrimary(mode string, rs []runResult) {
	var took, followed, promoted []time.Duration
	failed, second, late, none, between, unstuck := 0, 0, 0, 0, 0, 0
	var perRun []float64
	for _, r := range rs {
		between += r.risesBefore
		if r.unstuck > 0 {
			unstuck++
		}
		if r.took > 0 {
			took = append(took, r.took)
			if r.promoted > 0 {
				promoted = append(promoted, r.promoted)
			}
		} else {
			none++
		}
		if r.followed > 0 {
			followed = append(followed, r.followed)
		}
		failed += r.failed
		perRun = append(perRun, float64(r.failed))
		if r.second {
			second++
		}
		late += r.lateOld
	}
	t, f, pr := seconds(took), seconds(followed), seconds(promoted)
	sort.Float64s(perRun)
	over3 := 0
	for _, s := range t {
		if s > 3 {
			over3++
		}
	}
	fmt.Printf("%-10s %d runs: fault -> first write on the new primary median %.2f s, min %.2f s, max %.2f s (%d over 3 s, %d with none within 60 s); its status said primary after median %.2f s, max %.2f s; failed writes %d (median %.0f per run); second failovers %d within a run, epoch rises between runs %d; runs with a failover that did not stick %d; old-epoch acks after the new primary's first %d; old node following again after median %.2f s, max %.2f s\n",
		mode, len(rs), pct(t, 0.5), pct(t, 0), pct(t, 1), over3, none, pct(pr, 0.5), pct(pr, 1), failed, pct(perRun, 0.5), second, between, unstuck, late, pct(f, 0.5), pct(f, 1))
}

func summarizeReplica(mode string, rs []runResult) {
	var maxLat, p99, caught []time.Duration
	failed, withFailed, failovers, leases, between := 0, 0, 0, 0, 0
	for _, r := range rs {
		between += r.risesBefore
		leases += r.rises
		maxLat = append(maxLat, r.maxLat)
		p99 = append(p99, r.p99Lat)
		if r.caughtUp > 0 {
			caught = append(caught, r.caughtUp)
		}
		failed += r.failed
		if r.failed > 0 {
			withFailed++
		}
		if r.rises > 0 {
			failovers++
		}
	}
	m, q, c := seconds(maxLat), seconds(p99), seconds(caught)
	fmt.Printf("%-17s %d runs: failed writes %d (in %d runs); max write latency median %.3f s, max %.3f s; p99 median %.3f s; runs with a failover %d (epoch rises %d), epoch rises between runs %d; caught up after median %.2f s, max %.2f s\n",
		mode, len(rs), failed, withFailed, pct(m, 0.5), pct(m, 1), pct(q, 0.5), failovers, leases, between, pct(c, 0.5), pct(c, 1))
}
