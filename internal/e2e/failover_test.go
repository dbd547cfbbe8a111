package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/scalestack/scalestack/internal/netns"
	"github.com/scalestack/scalestack/internal/nodebin"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Failover end to end: three store node processes (a primary and two
// replicas, each with its own NATS server, so the lease survives losing
// one), every one with --sync 1 --failover and the default --lease-ttl.
// Writers and strong readers go through store.Client with a static list of
// the three nodes and no primary marked: the client finds the primary from
// X-Store-Primary and 421 answers, as it must after a failover.

// storeNode is one store process of a failover group.
type storeNode struct {
	name, role string
	addr       string // loopback IP of this node
	flags      []string
	admin      string // host:port
	store      string
	gossip     string
	data       string
	host       *netns.Host // the network namespace it runs in; nil: this machine's loopback
	p          *proc
}

// storeGroup is three store nodes: db-1 (--roles primary), replica-1 and
// replica-2.
type storeGroup struct {
	t     *testing.T
	nodes []*storeNode
	net   *netns.Net // the hosts of the nodes, when they run in namespaces
	key   string     // cluster key (NODE_CLUSTER_KEY), required off loopback
}

// newStoreGroup picks addresses and ports; start runs the processes. Each
// test gets its own three loopback addresses (base, base+1, base+2).
func newStoreGroup(t *testing.T, base int) *storeGroup {
	t.Helper()
	g := &storeGroup{t: t}
	for i, spec := range []struct{ name, role string }{{"db-1", "primary"}, {"replica-1", "replica"}, {"replica-2", "replica"}} {
		addr := fmt.Sprintf("127.0.0.%d", base+i)
		ps, err := testcluster.FreePorts(addr, 5)
		if err != nil {
			t.Fatal(err)
		}
		n := &storeNode{name: spec.name, role: spec.role, addr: addr, data: t.TempDir(),
			gossip: fmt.Sprintf("%s:%d", addr, ps[0]), admin: fmt.Sprintf("%s:%d", addr, ps[1]), store: fmt.Sprintf("%s:%d", addr, ps[2])}
		n.flags = []string{"--addr", addr,
			"--gossip-port", fmt.Sprint(ps[0]), "--admin-port", fmt.Sprint(ps[1]), "--store-port", fmt.Sprint(ps[2]),
			"--nats-port", fmt.Sprint(ps[3]), "--nats-cluster-port", fmt.Sprint(ps[4])}
		g.nodes = append(g.nodes, n)
	}
	return g
}

// start runs node i, joining the gossip of the others (none for the very
// first start of db-1).
func (g *storeGroup) start(i int, join bool) {
	g.t.Helper()
	n := g.nodes[i]
	args := append([]string{"--roles", n.role, "--name", n.name, "--data", n.data, "--sync", "1", "--failover"}, n.flags...)
	if join {
		var seeds []string
		for j, o := range g.nodes {
			if j != i {
				seeds = append(seeds, o.gossip)
			}
		}
		args = append(args, "--join", strings.Join(seeds, ","))
	}
	if n.host == nil {
		n.p = startNode(g.t, args...)
	} else {
		cmd := n.host.Command(context.Background(), nodebin.Build(g.t), append([]string{"run"}, args...)...)
		cmd.Env = append(os.Environ(), "NODE_CLUSTER_KEY="+g.key)
		n.p = startCmd(g.t, cmd)
	}
	p := n.p
	g.t.Cleanup(func() {
		// startNode shows the last lines; the store's and the lease's story
		// is often earlier, under NATS chatter.
		if g.t.Failed() {
			var keep []string
			for _, l := range strings.Split(p.stderr.String(), "\n") {
				if !strings.Contains(l, "component=nats") || strings.Contains(l, "JetStream") || strings.Contains(l, "leader") {
					keep = append(keep, l)
				}
			}
			g.t.Logf("store and lease log of %s:\n%s", n.name, tail(strings.Join(keep, "\n"), 80))
		}
	})
}

// up starts the three nodes and waits until db-1 is primary with both
// replicas streaming from it.
func (g *storeGroup) up() {
	g.t.Helper()
	// db-1 alone is never ready (JetStream, hence the lease, needs the
	// others' NATS servers), so the replicas start as soon as its gossip
	// listens: joining before that, they would form a cluster of their own.
	g.start(0, false)
	testwait.RetryUntil(g.t, 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", g.nodes[0].gossip, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	g.start(1, true)
	g.start(2, true)
	testwait.RetryUntil(g.t, 60*time.Second, func() error {
		for _, n := range g.nodes {
			resp, err := statusClient.Get("http://" + n.admin + "/readyz")
			if err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s not ready: %s %s", n.name, resp.Status, bytes.TrimSpace(b))
			}
		}
		return nil
	})
	testwait.RetryUntil(g.t, 30*time.Second, func() error {
		st, err := g.replStatus(g.nodes[0].store)
		if err != nil {
			return err
		}
		if st.Role != server.RolePrimary || len(st.Replicas) != 2 {
			return fmt.Errorf("db-1 is %s with %d replicas streaming, want primary with 2", st.Role, len(st.Replicas))
		}
		return nil
	})
}

// client returns a store client over the three nodes, none marked primary,
// recording in each call's answer slot which node and epoch answered.
func (g *storeGroup) client() *store.Client {
	var res store.StaticResolver
	for _, n := range g.nodes {
		res = append(res, store.NodeInfo{Name: n.name, Addr: n.store})
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
	}
	c := store.NewClient(store.ClientConfig{Resolver: res, HTTPClient: &http.Client{Transport: answerRecorder{tr}}, Timeout: 5 * time.Second, Token: g.storeToken()})
	g.t.Cleanup(func() { c.Close(); tr.CloseIdleConnections() })
	return c
}

// primary returns the index of the one node that says it is primary with
// its lease still good, or an error if none or several do.
func (g *storeGroup) primary() (int, server.ReplicationStatus, error) {
	n, st, err := storewatch.Primary(context.Background(), g.watched())
	if err != nil {
		return -1, st, err
	}
	for i, o := range g.nodes {
		if o.name == n.Name {
			return i, st, nil
		}
	}
	return -1, st, fmt.Errorf("primary %s is not in the group", n.Name)
}

// waitForNewPrimary waits until a node other than old is primary at an
// epoch above oldEpoch, and returns its name and status.
func (g *storeGroup) waitForNewPrimary(old string, oldEpoch uint64, timeout time.Duration) (string, server.ReplicationStatus) {
	g.t.Helper()
	var name string
	var st server.ReplicationStatus
	testwait.RetryUntil(g.t, timeout, func() error {
		n, s, err := storewatch.NewPrimary(context.Background(), g.watched(), old, oldEpoch)
		name, st = n.Name, s
		return err
	})
	return name, st
}

// watched is the group's nodes as internal/storewatch reaches them.
func (g *storeGroup) watched() []storewatch.Node {
	var out []storewatch.Node
	for _, n := range g.nodes {
		out = append(out, storewatch.Node{Name: n.name, Addr: n.store, Token: g.storeToken()})
	}
	return out
}

// converged waits until the three nodes have the same LSN and checksum.
func (g *storeGroup) converged(timeout time.Duration) {
	g.t.Helper()
	testwait.RetryUntil(g.t, timeout, func() error {
		var sums []string
		for _, n := range g.nodes {
			sum, lsn, err := g.checksum(n.store)
			if err != nil {
				return err
			}
			sums = append(sums, fmt.Sprintf("%s: %d at LSN %d", n.name, sum, lsn))
		}
		for _, s := range sums[1:] {
			if s[strings.Index(s, ":"):] != sums[0][strings.Index(sums[0], ":"):] {
				return fmt.Errorf("checksums differ: %v", sums)
			}
		}
		g.t.Logf("converged: %v", sums)
		return nil
	})
}

// waitReplicaOf waits until node i is a replica streaming from primary.
// waitReplicaOfPrimary waits until node i is a replica streaming from the
// node that is primary at that moment. That may not be the primary before
// node i restarted: a node rejoining the NATS cluster can leave the lease's
// stream without a leader for longer than the lease, and another replica
// then takes over in a new epoch (seen in CI), which is failover working.
func (g *storeGroup) waitReplicaOfPrimary(i int, timeout time.Duration) {
	g.t.Helper()
	testwait.RetryUntil(g.t, timeout, func() error {
		pi, _, err := g.primary()
		if err != nil {
			return err
		}
		primary := g.nodes[pi].name
		st, err := g.replStatus(g.nodes[i].store)
		if err != nil {
			return err
		}
		if st.Role != server.RoleReplica || st.Following == nil || !st.Following.Connected || st.Following.Primary != primary {
			return fmt.Errorf("%s: role %s, following %+v; want a replica streaming from %s, the primary", g.nodes[i].name, st.Role, st.Following, primary)
		}
		return nil
	})
}

// storeToken is the store port's credential derived from the group's
// cluster key ("" without a key).
func (g *storeGroup) storeToken() string {
	k, err := cluster.ParseKey(g.key)
	if err != nil {
		g.t.Fatalf("cluster key: %v", err)
	}
	return cluster.DeriveSecrets(k).Store
}

// replStatus reads the replication status of the node at storeAddr.
func (g *storeGroup) replStatus(storeAddr string) (server.ReplicationStatus, error) {
	return storewatch.Replication(context.Background(), storewatch.Node{Name: storeAddr, Addr: storeAddr, Token: g.storeToken()})
}

func (g *storeGroup) checksum(storeAddr string) (uint32, uint64, error) {
	return storewatch.Checksum(context.Background(), storewatch.Node{Name: storeAddr, Addr: storeAddr, Token: g.storeToken()})
}

var statusClient = &http.Client{Timeout: 2 * time.Second}

// answer is filled by answerRecorder with the node and epoch of the last
// answer a call got: for an acknowledged write, the node that acknowledged
// it.
type answer struct {
	node  string
	epoch uint64
}

type answerKey struct{}

// answerRecorder copies X-Store-Node and X-Store-Epoch of every answer into
// the *answer of the request's context. RoundTrip runs in the caller's
// goroutine, so the caller reads the answer without a lock.
type answerRecorder struct{ base http.RoundTripper }

func (a answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.base.RoundTrip(req)
	if err == nil {
		if an, ok := req.Context().Value(answerKey{}).(*answer); ok {
			an.node = resp.Header.Get(store.HeaderNode)
			an.epoch, _ = strconv.ParseUint(resp.Header.Get(store.HeaderEpoch), 10, 64)
		}
	}
	return resp, err
}

// regInput and regOutput are one operation on a register (one key).
type regInput struct {
	write bool
	value string // written value
}

type regOutput struct {
	value   string // value read ("" when absent)
	unknown bool   // a write whose outcome is unknown
}

// registerModel is a register per key; a history is partitioned by key.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Metadata.(string)
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(regInput), output.(regOutput)
		if in.write {
			return true, in.value
		}
		return out.value == state.(string), state
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		if in.write {
			if out.unknown {
				return fmt.Sprintf("put(%q)?", in.value)
			}
			return fmt.Sprintf("put(%q)", in.value)
		}
		return fmt.Sprintf("get() -> %q", out.value)
	},
}

// ack is one acknowledged write: the value written (also the key of its
// record in bucket "acked"), who acknowledged it and when the client got
// the acknowledgement.
type ack struct {
	key, value string
	node       string
	epoch      uint64
	ret        time.Duration // since the workload's start
}

// workload runs writers and strong readers on a few keys through c until
// stop. Each write is one transaction: the register key in bucket "lin" and
// a record of the write in bucket "acked" (key = the unique value).
type workload struct {
	c     *store.Client
	start time.Time
	keys  int

	mu      sync.Mutex
	history []porcupine.Operation
	acks    []ack
	failed  int // writes with an unknown outcome
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

// runWorkload starts one goroutine per entry of timeouts (the per-call
// deadline of that writer).
func runWorkload(c *store.Client, keys int, timeouts []time.Duration) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{c: c, start: time.Now(), keys: keys, cancel: cancel}
	for id, timeout := range timeouts {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 42))
			for seq := 0; ctx.Err() == nil; seq++ {
				key := fmt.Sprintf("k%d", rng.IntN(keys))
				if rng.IntN(2) == 0 {
					w.write(ctx, id, key, fmt.Sprintf("w%d-%06d", id, seq), timeout)
				} else {
					w.read(ctx, id, key, timeout)
				}
			}
		}()
	}
	return w
}

func (w *workload) now() int64 { return int64(time.Since(w.start)) }

func (w *workload) write(ctx context.Context, id int, key, value string, timeout time.Duration) {
	an := &answer{}
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, answerKey{}, an), timeout)
	defer cancel()
	call := w.now()
	_, err := w.c.Txn(cctx, store.Put("lin", key, []byte(value)), store.Put("acked", value, []byte(key)))
	ret := w.now()
	op := porcupine.Operation{ClientId: id, Input: regInput{write: true, value: value}, Call: call, Return: ret, Metadata: key}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		// Not acknowledged: it may still have been applied (a timeout, a
		// sync timeout, a node killed after its commit), so it is
		// modelled as concurrent with everything after its call.
		op.Output, op.Return = regOutput{unknown: true}, math.MaxInt64
		w.failed++
	} else {
		op.Output = regOutput{}
		w.acks = append(w.acks, ack{key: key, value: value, node: an.node, epoch: an.epoch, ret: time.Duration(ret)})
	}
	w.history = append(w.history, op)
}

func (w *workload) read(ctx context.Context, id int, key string, timeout time.Duration) {
	cctx, cancel := context.WithTimeout(store.WithConsistency(ctx, store.Strong, 0), timeout)
	defer cancel()
	call := w.now()
	v, err := w.c.Get(cctx, "lin", key)
	ret := w.now()
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return // a failed read changed nothing and showed nothing
	}
	w.mu.Lock()
	w.history = append(w.history, porcupine.Operation{ClientId: id, Input: regInput{}, Output: regOutput{value: string(v)}, Call: call, Return: ret, Metadata: key})
	w.mu.Unlock()
}

// stop ends the workload and waits for its goroutines.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
}

// acked returns a copy of the acknowledgements so far.
func (w *workload) acked() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ack(nil), w.acks...)
}

// waitAcks waits until n more writes than `from` were acknowledged, by a
// node other than `not` when it is set.
func (w *workload) waitAcks(t *testing.T, from, n int, not string, timeout time.Duration) {
	t.Helper()
	testwait.RetryUntil(t, timeout, func() error {
		w.mu.Lock()
		acks, failed := w.acks, w.failed
		w.mu.Unlock()
		got := 0
		for _, a := range acks[min(from, len(acks)):] {
			if not == "" || a.node != not {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%d of %d acknowledged writes so far (%d failed)", got, n, failed)
		}
		return nil
	})
}

// check reads every acknowledged write back with strong reads and checks
// the history for linearizability.
func (w *workload) check(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(store.WithConsistency(context.Background(), store.Strong, 0), 30*time.Second)
	defer cancel()
	stored := map[string]string{}
	for start := ""; ; {
		// A primary refuses strong reads while its lease renewal is late
		// (a restarted node's NATS server rejoining can delay it): that is
		// the safe answer, not a wrong one, so the scan is retried until
		// the deadline.
		var pairs []store.Pair
		var err error
		for {
			pairs, err = w.c.Scan(ctx, "acked", store.ScanOptions{Start: start, Limit: 1000})
			if err == nil || ctx.Err() != nil {
				break
			}
			t.Logf("scan acked: %v; retrying", err)
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("scan acked: %v", err)
		}
		for _, p := range pairs {
			stored[p.Key] = string(p.Value)
		}
		if len(pairs) < 1000 {
			break
		}
		start = pairs[len(pairs)-1].Key + "\x00"
	}
	lost := 0
	for _, a := range w.acks {
		if stored[a.value] != a.key {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged write %s=%s (by %s at epoch %d, %v) lost: stored %q", a.key, a.value, a.node, a.epoch, a.ret, stored[a.value])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(w.acks))
	}
	begin := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, w.history, 60*time.Second)
	t.Logf("%d acknowledged writes read back; %d writes of unknown outcome; %d operations on %d keys checked for linearizability in %v: %s",
		len(w.acks), w.failed, len(w.history), w.keys, time.Since(begin).Round(time.Millisecond), res)
	if res != porcupine.Ok {
		for i, part := range info.PartialLinearizationsOperations() {
			if len(part) > 0 && len(part[0]) > 0 {
				t.Logf("partition %d: longest linearizable prefix %d operations", i, len(part[0]))
			}
		}
		t.Fatalf("history is %s, want Ok", res)
	}
}

// kill -9 of the primary under concurrent writers and strong readers: a
// replica takes over, no acknowledged write is lost, the history is
// linearizable, and the old primary, restarted, rejoins as a replica and
// converges.
func TestFailoverKill9Primary(t *testing.T) {
	g := newStoreGroup(t, 221)
	g.up()
	w := runWorkload(g.client(), 6, []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second})
	defer w.stop()
	w.waitAcks(t, 0, 200, "", 30*time.Second)

	before := len(w.acked())
	killed := time.Since(w.start)
	g.nodes[0].p.cmd.Process.Signal(syscall.SIGKILL)
	<-g.nodes[0].p.done
	w.waitAcks(t, before, 1, "db-1", 30*time.Second)
	var first ack
	for _, a := range w.acked()[before:] {
		if a.node != "db-1" {
			first = a
			break
		}
	}
	t.Logf("kill -9 of db-1 -> first write acknowledged by %s (epoch %d): %v", first.node, first.epoch, (first.ret - killed).Round(time.Millisecond))
	w.waitAcks(t, before, 200, "db-1", 30*time.Second)
	w.stop()

	pi, _, err := g.primary()
	if err != nil {
		t.Fatal(err)
	}
	if g.nodes[pi].name != first.node {
		t.Fatalf("primary is %s, but %s acknowledged the first write after the kill", g.nodes[pi].name, first.node)
	}
	g.start(0, true)
	g.waitReplicaOfPrimary(0, 30*time.Second)
	g.converged(30 * time.Second)
	w.check(t)
}

// SIGSTOP of the primary for longer than its lease, then SIGCONT: another
// node takes over, and the old primary acknowledges no write after that
// (every acknowledgement carries the node and epoch that gave it), then
// rejoins as a replica.
func TestFailoverPausedPrimaryNeverAcksLate(t *testing.T) {
	g := newStoreGroup(t, 224)
	g.up()
	st, err := g.replStatus(g.nodes[0].store)
	if err != nil {
		t.Fatal(err)
	}
	oldEpoch := st.Epoch
	// Three writers wait long (60s, past the pause: whatever they sent to
	// the paused primary is answered after it resumes); three give up
	// after 1s and find the new primary.
	w := runWorkload(g.client(), 6, []time.Duration{time.Minute, time.Minute, time.Minute, time.Second, time.Second, time.Second})
	defer w.stop()
	w.waitAcks(t, 0, 200, "", 30*time.Second)

	before := len(w.acked())
	paused := time.Now()
	g.nodes[0].p.cmd.Process.Signal(syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			g.nodes[0].p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	w.waitAcks(t, before, 50, "db-1", 30*time.Second)
	// Stay paused at least three lease lifetimes (default 1.5s).
	if d := 4500*time.Millisecond - time.Since(paused); d > 0 {
		time.Sleep(d) // the pause itself is the test: nothing to poll
	}
	g.nodes[0].p.cmd.Process.Signal(syscall.SIGCONT)
	resumed = true
	pausedAt, resumedAt := paused.Sub(w.start), time.Since(w.start)
	t.Logf("db-1 paused for %v", (resumedAt - pausedAt).Round(time.Millisecond))

	newPrimary, pst := g.waitForNewPrimary("db-1", oldEpoch, 30*time.Second)
	t.Logf("%s took over at epoch %d", newPrimary, pst.Epoch)
	g.waitReplicaOfPrimary(0, 30*time.Second)
	after := len(w.acked())
	w.waitAcks(t, after, 100, "", 30*time.Second) // the long writers' answers from db-1 came in by now
	w.stop()

	acks := w.acked()
	var firstNew time.Duration = -1
	for _, a := range acks {
		if a.epoch > oldEpoch && (firstNew < 0 || a.ret < firstNew) {
			firstNew = a.ret
		}
	}
	late, old := 0, 0
	for _, a := range acks {
		if a.epoch <= oldEpoch {
			old++
			if a.ret > firstNew {
				late++
				t.Errorf("write %s=%s acknowledged by %s at epoch %d at %v, after the first acknowledgement of epoch %d at %v",
					a.key, a.value, a.node, a.epoch, a.ret, pst.Epoch, firstNew)
			}
		}
	}
	t.Logf("%d acknowledgements at epoch <= %d, %d after; first of the new epoch %v after the pause; %d late", old, oldEpoch, len(acks)-old, (firstNew - pausedAt).Round(time.Millisecond), late)
	w.mu.Lock()
	spanned := 0
	for _, op := range w.history {
		if op.Input.(regInput).write && op.Call < int64(pausedAt) && op.Return > int64(resumedAt) {
			spanned++ // sent before the pause, answered (or never) after it
		}
	}
	w.mu.Unlock()
	t.Logf("%d writes sent before the pause were answered after the resume or not at all", spanned)
	g.converged(30 * time.Second)
	w.check(t)
}
