// Command replication measures the store's replication with real node
// processes on loopback: write throughput with --sync 0 and --sync 1 against
// a single store node, replication lag at half of the maximum write rate,
// and the time from kill -9 of the primary to the first write a new primary
// accepts. With the store nodes on hosts made of network namespaces
// (internal/netns, needs root) it also measures failover under writes for
// kill -9, SIGSTOP and a network partition of the primary, and what a
// paused or cut-off replica does to the primary's writes (faults.go).
// run.sh builds the node binary and runs it; the method is in
// bench/README.md, "## Replication".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/netns"
	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

func main() {
	nodeBin := flag.String("node", "", "path of the node binary (required)")
	what := flag.String("what", "throughput,lag,failover", "comma-separated parts to run: throughput, lag, failover (loopback); kill, pause, partition, pause-replica, partition-replica (network namespaces, root), or faults for all five")
	duration := flag.Duration("duration", 5*time.Second, "length of each throughput and lag measurement")
	writers := flag.Int("writers", 32, "concurrent writers for the throughput measurement")
	runs := flag.Int("runs", 20, "rounds of the failover measurement and of each fault mode")
	faultWriters := flag.Int("fault-writers", 8, "concurrent writers during the fault modes")
	observe := flag.Duration("observe", 10*time.Second, "fault modes: how long writes go on after the faulty node is back (following again, or caught up) to see whether anyone fails over again")
	replicaFault := flag.Duration("replica-fault", 5*time.Second, "pause-replica, partition-replica: how long the replica stays paused or cut off")
	rest := flag.Duration("rest", 3*time.Second, "fault modes: steady state before each run (the primary moves the lease bucket's NATS leadership off its own server every 2s)")
	passes := flag.Int("passes", 3, "rounds of the throughput measurement (every configuration in each)")
	keep := flag.Bool("keep", false, "keep the nodes' data directories and logs (the directory is printed on stderr)")
	ip := flag.Int("ip", 241, "last byte of the first of three loopback addresses 127.0.0.N..N+2")
	flag.Parse()
	if *nodeBin == "" {
		log.Fatal("-node is required")
	}
	b := &bench{node: *nodeBin, ip: *ip, duration: *duration, writers: *writers, passes: *passes,
		faultWriters: *faultWriters, observe: *observe, replicaFault: *replicaFault, rest: *rest}
	dir, err := os.MkdirTemp("", "bench-replication-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "nodes' data and logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b.dir = dir
	parts := map[string]bool{}
	for _, p := range strings.Split(*what, ",") {
		p = strings.TrimSpace(p)
		if p == "faults" {
			for _, m := range faultModes {
				parts[m] = true
			}
			continue
		}
		if !known(p) {
			log.Fatalf("-what: unknown part %q", p)
		}
		parts[p] = true
	}
	var maxRate float64
	if parts["throughput"] || parts["lag"] {
		maxRate = b.throughput()
	}
	if parts["lag"] {
		b.lag(maxRate / 2)
	}
	if parts["failover"] {
		b.failover(*runs)
	}
	var modes []string
	for _, m := range faultModes {
		if parts[m] {
			modes = append(modes, m)
		}
	}
	if len(modes) > 0 {
		b.faults(modes, *runs)
	}
}

func known(part string) bool {
	return slices.Contains([]string{"throughput", "lag", "failover"}, part) || slices.Contains(faultModes, part)
}

type bench struct {
	node     string
	dir      string
	ip       int
	duration time.Duration
	writers  int
	passes   int
	seq      int // data directory counter

	faultWriters int
	observe      time.Duration
	replicaFault time.Duration
	rest         time.Duration
}

// proc is one node process.
type proc struct {
	name, role string
	addr       string
	store      string // host:port of the store API
	gossip     string
	admin      string
	data       string
	flags      []string
	cmd        *exec.Cmd
	done       chan struct{}
	logf       *os.File
	extra      []string
	bin        string
	host       *netns.Host // the network namespace it runs in; nil: loopback
	env        []string    // added to the environment (the cluster key off loopback)
	token      string      // the store port's credential, derived from that key
}

func freePorts(addr string, n int) []int {
	var ports []int
	var lns []net.Listener
	for len(ports) < n {
		ln, err := net.Listen("tcp", addr+":0")
		if err != nil {
			log.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if u, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", addr, port)); err == nil {
			u.Close()
			ports = append(ports, port)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// newProc prepares node i (0: db-1 primary, 1, 2: replicas).
func (b *bench) newProc(i int, extra ...string) *proc {
	names := []string{"db-1", "replica-1", "replica-2"}
	roles := []string{"primary", "replica", "replica"}
	addr := fmt.Sprintf("127.0.0.%d", b.ip+i)
	ps := freePorts(addr, 5)
	b.seq++
	p := &proc{name: names[i], role: roles[i], addr: addr, data: filepath.Join(b.dir, fmt.Sprintf("%s-%d", names[i], b.seq)),
		gossip: fmt.Sprintf("%s:%d", addr, ps[0]), admin: fmt.Sprintf("%s:%d", addr, ps[1]), store: fmt.Sprintf("%s:%d", addr, ps[2]), extra: extra, bin: b.node}
	p.flags = []string{"--addr", addr, "--gossip-port", fmt.Sprint(ps[0]), "--admin-port", fmt.Sprint(ps[1]),
		"--store-port", fmt.Sprint(ps[2]), "--nats-port", fmt.Sprint(ps[3]), "--nats-cluster-port", fmt.Sprint(ps[4])}
	return p
}

func (p *proc) start(join []string) {
	args := append([]string{"run", "--roles", p.role, "--name", p.name, "--data", p.data}, p.flags...)
	args = append(args, p.extra...)
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	f, err := os.OpenFile(p.data+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	p.logf = f
	if p.host != nil {
		p.cmd = p.host.Command(context.Background(), p.bin, args...)
		p.cmd.Env = append(os.Environ(), p.env...)
	} else {
		p.cmd = exec.Command(p.bin, args...)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
}

func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// group starts one store node (n = 1, --nats off) or three (--failover),
// each with extra flags, and waits until the primary is streaming to every
// replica.
func (b *bench) group(n int, extra ...string) []*proc {
	var ps []*proc
	for i := range n {
		ps = append(ps, b.newProc(i, extra...))
	}
	if n == 1 {
		ps[0].extra = append(ps[0].extra, "--nats", "off")
	}
	startGroup(ps)
	return ps
}

// startGroup starts the nodes (db-1 first: the others join its gossip) and
// waits until the primary is streaming to every replica.
func startGroup(ps []*proc) {
	n := len(ps)
	if n == 1 {
		ps[0].start(nil)
	} else {
		ps[0].start(nil)
		waitFor("db-1 gossip", 30*time.Second, func() error {
			c, err := net.DialTimeout("tcp", ps[0].gossip, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		for _, p := range ps[1:] {
			p.start(gossipsBut(ps, p))
		}
	}
	waitFor("the group", 60*time.Second, func() error {
		for _, p := range ps {
			if err := ready(p.admin); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		if n == 1 {
			return nil
		}
		st, err := status(ps[0])
		if err != nil {
			return err
		}
		if st.Replication.Role != server.RolePrimary || len(st.Replication.Replicas) != n-1 {
			return fmt.Errorf("db-1 is %s with %d replicas", st.Replication.Role, len(st.Replication.Replicas))
		}
		return nil
	})
}

func gossipsBut(ps []*proc, not *proc) []string {
	var out []string
	for _, p := range ps {
		if p != not {
			out = append(out, p.gossip)
		}
	}
	return out
}

func stopAll(ps []*proc) {
	for _, p := range ps {
		p.kill()
	}
}

// waitFor waits for fn to return nil and ends the benchmark if it does
// not within timeout.
func waitFor(what string, timeout time.Duration, fn func() error) {
	if err := poll.Until(context.Background(), timeout, pollEvery, fn); err != nil {
		log.Fatalf("waiting for %s: %v", what, err)
	}
}

// pollEvery is how often the benchmark polls a node for a condition.
const pollEvery = 20 * time.Millisecond

var httpc = &http.Client{Timeout: 2 * time.Second}

func ready(admin string) error {
	resp, err := httpc.Get("http://" + admin + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

type nodeStatus struct {
	LSN         uint64
	Replication server.ReplicationStatus
}

// status reads p's /v1/status, with the store token of its cluster key.
func status(p *proc) (nodeStatus, error) {
	st, err := storewatch.Status(context.Background(), p.watched())
	if err != nil {
		return nodeStatus{}, err
	}
	if st.Replication == nil {
		return nodeStatus{}, fmt.Errorf("%s: no replication status", p.name)
	}
	return nodeStatus{LSN: st.LSN, Replication: *st.Replication}, nil
}

// watched is p as internal/storewatch reaches it.
func (p *proc) watched() storewatch.Node {
	return storewatch.Node{Name: p.name, Addr: p.store, Token: p.token}
}

// watched is the watched form of each of ps.
func watched(ps []*proc) []storewatch.Node {
	out := make([]storewatch.Node, len(ps))
	for i, p := range ps {
		out[i] = p.watched()
	}
	return out
}

// client is a store client over ps, none marked primary, that records in
// each call's *answer who answered, at which epoch.
func client(ps []*proc, timeout time.Duration) *store.Client {
	var res store.StaticResolver
	for _, p := range ps {
		res = append(res, store.NodeInfo{Name: p.name, Addr: p.store, Primary: len(ps) == 1})
	}
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: time.Second}).DialContext, MaxIdleConnsPerHost: 256}
	return store.NewClient(store.ClientConfig{Resolver: res, HTTPClient: &http.Client{Transport: recorder{tr}}, Timeout: timeout, Token: ps[0].token})
}

type answerKey struct{}

// answer is the node and epoch of the last answer a call got: for an
// acknowledged write, who acknowledged it.
type answer struct {
	node  string
	epoch uint64
}

// recorder fills the *answer of a request's context. RoundTrip runs in the
// caller's goroutine, so the caller reads it without a lock.
type recorder struct{ base http.RoundTripper }

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil {
		if a, ok := req.Context().Value(answerKey{}).(*answer); ok {
			a.node = resp.Header.Get(store.HeaderNode)
			a.epoch, _ = strconv.ParseUint(resp.Header.Get(store.HeaderEpoch), 10, 64)
		}
	}
	return resp, err
}

var value = []byte(strings.Repeat("v", 100))

// load writes new keys with `writers` goroutines for d; with rate > 0 the
// writes are paced to that many per second in total. It returns the
// acknowledged writes per second and the failures.
func load(c *store.Client, writers int, d time.Duration, rate float64, prefix string) (float64, int64) {
	var acked, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tk.Stop()
		tick = tk.C
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.Txn(wctx, store.Put("bench", fmt.Sprintf("%s-%d-%08d", prefix, w, i), value))
				wcancel()
				if err != nil {
					failed.Add(1)
				} else {
					acked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(acked.Load()) / time.Since(start).Seconds(), failed.Load()
}

// throughput measures the single node, then three nodes with --sync 0 and
// --sync 1, `passes` times in turn (a shared machine drifts: pairing the
// configurations of one pass cancels part of it); it prints the median
// rates and the median of the per-pass ratios, and returns the median
// --sync 1 rate.
func (b *bench) throughput() float64 {
	fmt.Printf("## write throughput: %d writers, %v per configuration, %d passes, one 100-byte put per transaction\n", b.writers, b.duration, b.passes)
	confs := []struct {
		name  string
		n     int
		flags []string
	}{
		{"single node", 1, nil},
		{"primary + 2 replicas, --sync 0", 3, []string{"--sync", "0", "--failover"}},
		{"primary + 2 replicas, --sync 1", 3, []string{"--sync", "1", "--failover"}},
	}
	rates := make([][]float64, len(confs))  // [conf][pass]
	ratios := make([][]float64, len(confs)) // rate / single node rate, per pass
	for pass := 1; pass <= b.passes; pass++ {
		for i, cf := range confs {
			ps := b.group(cf.n, cf.flags...)
			c := client(ps, 5*time.Second)
			load(c, b.writers, time.Second, 0, "warm") // connections, first pages
			rate, failed := load(c, b.writers, b.duration, 0, "run")
			c.Close()
			stopAll(ps)
			rates[i] = append(rates[i], rate)
			ratios[i] = append(ratios[i], rate/rates[0][pass-1])
			fmt.Printf("pass %d: %-32s %8.0f writes/s  ratio to single %.2f  failed %d\n", pass, cf.name, rate, rate/rates[0][pass-1], failed)
		}
	}
	for i, cf := range confs {
		r, q := append([]float64(nil), rates[i]...), append([]float64(nil), ratios[i]...)
		sort.Float64s(r)
		sort.Float64s(q)
		fmt.Printf("median: %-32s %8.0f writes/s  ratio to single %.2f (%.2f - %.2f)\n", cf.name, pct(r, 0.5), pct(q, 0.5), q[0], q[len(q)-1])
	}
	r := append([]float64(nil), rates[len(confs)-1]...)
	sort.Float64s(r)
	return pct(r, 0.5)
}

// lag writes at rate with --sync 0 and --sync 1 and samples the primary's
// status every 10ms: per replica, primary LSN - replica's applied LSN.
func (b *bench) lag(rate float64) {
	fmt.Printf("## replication lag at %.0f writes/s (half of the --sync 1 maximum), %v, primary /v1/status every 10ms\n", rate, b.duration)
	for _, sync := range []string{"0", "1"} {
		ps := b.group(3, "--sync", sync, "--failover")
		c := client(ps, 5*time.Second)
		load(c, b.writers, time.Second, rate, "warm")
		var lags []float64
		var got float64
		done := make(chan struct{})
		go func() {
			got, _ = load(c, b.writers, b.duration, rate, "lag")
			close(done)
		}()
		t := time.NewTicker(10 * time.Millisecond)
	sample:
		for {
			select {
			case <-done:
				break sample
			case <-t.C:
			}
			st, err := status(ps[0])
			if err != nil {
				continue
			}
			for _, r := range st.Replication.Replicas {
				lags = append(lags, float64(r.Lag))
			}
		}
		t.Stop()
		c.Close()
		stopAll(ps)
		sort.Float64s(lags)
		p50, p99, mx := pct(lags, 0.5), pct(lags, 0.99), pct(lags, 1)
		fmt.Printf("--sync %s: %.0f writes/s achieved, %d samples: lag p50 %.0f entries (%.1f ms), p99 %.0f entries (%.1f ms), max %.0f entries\n",
			sync, got, len(lags), p50, 1000*p50/got, p99, 1000*p99/got, mx)
	}
}

func pct(s []float64, p float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

// failover kills the primary of a three-node --sync 1 group `runs` times
// under 4 writers and measures kill -> first write acknowledged by another
// node. The killed node restarts and rejoins as a replica before the next
// round; the group rests 3s so the lease bucket's leadership has moved off
// the primary (its Maintain runs every 2s), as in steady operation.
func (b *bench) failover(runs int) {
	fmt.Printf("## kill -9 of the primary -> first acknowledged write on the new primary, %d runs, default --lease-ttl\n", runs)
	ps := b.group(3, "--sync", "1", "--failover")
	defer stopAll(ps)
	c := client(ps, 5*time.Second)
	defer c.Close()
	var times []float64
	for run := 1; run <= runs; run++ {
		time.Sleep(3 * time.Second) // steady state: see the doc comment
		var primary *proc
		waitFor("one primary", 30*time.Second, func() error {
			primary = nil
			for _, p := range ps {
				st, err := status(p)
				if err == nil && st.Replication.Role == server.RolePrimary && st.Replication.Lease != nil && st.Replication.Lease.ValidForMS > 0 {
					if primary != nil {
						return errors.New("two primaries")
					}
					primary = p
				}
			}
			if primary == nil {
				return errors.New("no primary")
			}
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan time.Time, 1)
		var acks atomic.Int64
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					an := &answer{}
					wctx, wcancel := context.WithTimeout(context.WithValue(ctx, answerKey{}, an), 5*time.Second)
					_, err := c.Txn(wctx, store.Put("bench", fmt.Sprintf("f%d-%d-%d", run, w, i), value))
					wcancel()
					if err == nil {
						acks.Add(1)
						if an.node != primary.name {
							select {
							case first <- time.Now():
							default:
							}
						}
					}
				}
			}()
		}
		waitFor("writes before the kill", 30*time.Second, func() error {
			if acks.Load() < 50 {
				return errors.New("fewer than 50 writes")
			}
			return nil
		})
		killed := time.Now()
		primary.kill()
		var took time.Duration
		select {
		case at := <-first:
			took = at.Sub(killed)
		case <-time.After(60 * time.Second):
			log.Fatalf("run %d: no write acknowledged by a new primary 60s after the kill", run)
		}
		cancel()
		wg.Wait()
		times = append(times, took.Seconds())
		fmt.Printf("run %2d: killed %s, first write on the new primary after %v\n", run, primary.name, took.Round(time.Millisecond))
		primary.start(gossipsBut(ps, primary))
		waitFor(primary.name+" following", 60*time.Second, func() error {
			st, err := status(primary)
			if err != nil {
				return err
			}
			if st.Replication.Role != server.RoleReplica || st.Replication.Following == nil || !st.Replication.Following.Connected {
				return fmt.Errorf("role %s", st.Replication.Role)
			}
			return nil
		})
	}
	sort.Float64s(times)
	fmt.Printf("kill -> first write on the new primary over %d runs: median %.2f s, min %.2f s, max %.2f s\n",
		len(times), pct(times, 0.5), times[0], times[len(times)-1])
}
