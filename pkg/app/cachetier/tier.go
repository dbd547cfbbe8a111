// Package cachetier is the app's side of the cache tier (stage 5 and the
// shared sessions of stage 7): cache-aside reads from the cache nodes
// (pkg/cache, or any server speaking the Redis protocol) through go-redis,
// sharded by consistent hashing over the nodes membership reports.
//
// What it guarantees, and how, is written down in docs/cache-tier.md. In
// short:
//
//   - A write marks each key it changes with a short tombstone carrying the
//     write's LSN, on every cache node, and raises a per-node watermark (the
//     highest LSN of any invalidating write). A reader fills an empty key
//     only with SET NX, so it never overwrites a tombstone; it fills only if
//     its load finished within half the tombstone's life, so a reader that
//     started before a write cannot fill after the tombstone is gone; and it
//     loads from the store at a consistency of at least the watermark, so a
//     lagging replica cannot hand it a value older than an acknowledged
//     write. Together: after a write is acknowledged, no reader is served,
//     or leaves in the cache, a value from before it.
//
//   - One load per key at a time in each app process (singleflight), so a hot
//     key that expires costs the store one read per app node, not one per
//     request.
//
//   - The cache is an optimisation only: every call has a short timeout, a
//     failed call is counted and logged at debug level and never fails the
//     request, and a node that fails repeatedly is taken out of the ring by a
//     circuit breaker until a probe finds it back, so a dead node does not
//     add a timeout to every request. Invalidations a node missed are
//     replayed to it before it serves again.
//
//   - Nothing read back from the cache is believed unless it verifies: every
//     value, tombstone and watermark the tier writes carries an HMAC-SHA256
//     under Config.MACKey (seal.go). An entry that does not verify is
//     ignored (the store answers, nothing is filled over it) and counted
//     (Stats.Rejected), so a cache node cannot make the app serve what the
//     app did not write.
//
// Values are opaque bytes; the app decides what to cache and names keys. A
// Tier is safe for concurrent use.
package cachetier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/scalestack/scalestack/pkg/app/cachetier/consistenthash"
	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
)

// Config configures a Tier.
type Config struct {
	// Nodes returns the host:port of every cache node that is alive now.
	// The node wires it to membership (members with the cache role); the
	// tier calls it at Open and every RefreshInterval and rebuilds its ring
	// when the set changes. Nil means there are no cache nodes: every lookup
	// is a BYPASS to the store.
	Nodes func() []string
	// Password is sent with AUTH on every connection when not empty: the
	// cache nodes' password, which the node derives from --cluster-key
	// (or takes from --cache-password). Default "".
	Password string
	// TLS, when not nil, makes every connection to a cache node TLS with
	// it: the node's client configuration (--tls-ca), which verifies the
	// cache node's certificate against the CA and the address dialled.
	// Default nil: plain TCP.
	TLS *tls.Config

	// MACKey authenticates every entry the tier writes (HMAC-SHA256 over the
	// key, the value and its expiry; seal.go). An entry that does not verify
	// is treated as a miss, never filled over, and counted in
	// Stats.Rejected: whoever can write to a cache node can then cost the
	// store reads, but cannot make the app serve a session or a page it did
	// not write. Every app and worker sharing the cache nodes needs the same
	// key, or each rejects the others' entries. The node derives it from
	// --cluster-key. Empty (the default) uses a development key written in
	// this source: it tells the tier's entries from anything else, but
	// protects nothing. At least 16 bytes when set.
	MACKey []byte
	// Group is the store group whose data the tier caches (store.Group,
	// stage 10): the LSNs of its tombstones and watermark are that group's
	// and its loads ask that group's LSN, so that LSNs of different groups
	// are never compared. A tombstone of another group still keeps its key
	// from being filled, but its LSN is not used. Default
	// store.DefaultGroup, the one group of stages 1 to 9; each group's
	// tier keeps its watermark under its own key ("wm", "wm@content").
	Group string
	// Prefix starts every key the tier reads or writes, so the tier can share
	// a cache with other users, and a change in what the app stores can
	// change the prefix instead of misreading old entries. Default "ss2:"
	// ("ss1:" held entries without a MAC).
	Prefix string
	// TTL is how long a filled value lives, in the cache's clock. It is the
	// last line of defence: a value whose invalidation was lost is served at
	// most this long. Longer keeps more hits across quiet periods. Default 5m.
	TTL time.Duration
	// TombstoneTTL is how long a key written by the app stays marked as
	// invalidated. While marked, readers of the key go to the store and do
	// not fill it; a load that takes longer than TombstoneTTL/2 - Timeout is
	// not filled at all (it may have started before a write whose tombstone
	// has since gone). Longer tolerates slower loads but sends more reads of
	// a just-written key to the store. Default 2s.
	TombstoneTTL time.Duration
	// Timeout bounds one call to a cache node, connecting included. A cache
	// on the same network answers in well under a millisecond; this is how
	// long a request waits for a node that has stopped answering before it
	// goes to the store. Default 100ms.
	Timeout time.Duration
	// LoadTimeout bounds one load from the store, which all the readers of a
	// key that arrive while it runs share (each still stops waiting when its
	// own context ends). Default 10s.
	LoadTimeout time.Duration
	// FailureThreshold is how many calls in a row must fail before a node's
	// breaker opens and the node leaves the ring. Default 3.
	FailureThreshold int
	// Cooldown is how long an open breaker waits before probing the node
	// again. Shorter finds a node back sooner; each probe of a dead node
	// costs up to Timeout in the background. Default 1s.
	Cooldown time.Duration
	// RefreshInterval is how often Nodes is called and open breakers are
	// checked. Default 1s.
	RefreshInterval time.Duration
	// VirtualNodes is the number of points each cache node has on the hash
	// ring. Default consistenthash.DefaultReplicas (160).
	VirtualNodes int
	// PoolSize is the number of connections kept per cache node. Default 0:
	// go-redis's default, 10 per CPU.
	PoolSize int
	// MaxPending bounds how many keys whose invalidation could not reach a
	// node are remembered for it; they are replayed when the node comes
	// back. Past the bound the node is flushed (FLUSHALL) instead. Default
	// 10000.
	MaxPending int
	// Logger receives the tier's logs; cache errors are logged at debug
	// level, nodes leaving and rejoining the ring at warn and info. Nil
	// discards them.
	Logger *slog.Logger
	// Metrics registers the tier's Prometheus collectors; nil registers none.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Prefix:           "ss2:",
		TTL:              5 * time.Minute,
		TombstoneTTL:     2 * time.Second,
		Timeout:          100 * time.Millisecond,
		LoadTimeout:      10 * time.Second,
		FailureThreshold: 3,
		Cooldown:         time.Second,
		RefreshInterval:  time.Second,
		VirtualNodes:     consistenthash.DefaultReplicas,
		MaxPending:       10000,
	}
}

// Validate reports the first unusable field.
func (c *Config) Validate() error {
	switch {
	case c.Prefix == "":
		return errors.New("cachetier config: Prefix is required")
	case !validGroup(c.Group):
		return settings.Errorf("cachetier config", "Group", "%q is not a store group's name", c.Group)
	case len(c.MACKey) > 0 && len(c.MACKey) < 16:
		return fmt.Errorf("cachetier config: MACKey of %d bytes: want at least 16", len(c.MACKey))
	case c.TTL < time.Second:
		return settings.Errorf("cachetier config", "TTL", "%v: want at least 1s", c.TTL)
	case c.Timeout <= 0:
		return settings.Errorf("cachetier config", "Timeout", "%v: want more than 0", c.Timeout)
	case c.TombstoneTTL <= 4*c.Timeout:
		return settings.Errorf("cachetier config", "TombstoneTTL", "%v: want more than 4 × Timeout (%v), or no load could ever fill", c.TombstoneTTL, c.Timeout)
	case c.TombstoneTTL >= c.TTL:
		return settings.Errorf("cachetier config", "TombstoneTTL", "%v: want less than TTL %v", c.TombstoneTTL, c.TTL)
	case c.LoadTimeout <= 0:
		return fmt.Errorf("cachetier config: LoadTimeout %v: want more than 0", c.LoadTimeout)
	case c.FailureThreshold < 1:
		return fmt.Errorf("cachetier config: FailureThreshold %d: want at least 1", c.FailureThreshold)
	case c.Cooldown <= 0:
		return fmt.Errorf("cachetier config: Cooldown %v: want more than 0", c.Cooldown)
	case c.RefreshInterval <= 0:
		return fmt.Errorf("cachetier config: RefreshInterval %v: want more than 0", c.RefreshInterval)
	case c.VirtualNodes < 1:
		return fmt.Errorf("cachetier config: VirtualNodes %d: want at least 1", c.VirtualNodes)
	case c.PoolSize < 0:
		return fmt.Errorf("cachetier config: PoolSize %d: want 0 (default) or more", c.PoolSize)
	case c.MaxPending < 1:
		return fmt.Errorf("cachetier config: MaxPending %d: want at least 1", c.MaxPending)
	}
	return nil
}

// Tier is the client side of the cache tier. Build it with New, start its
// background work (following Nodes, probing down nodes) with Open, stop it
// with Close. Before Open and after Close every lookup is a BYPASS.
type Tier struct {
	cfg   Config
	log   *slog.Logger
	met   *metrics
	sf    singleflight.Group
	seal  *sealer
	wmKey string
	group string // Config.Group, as store.ParseGroup writes it
	// fillWindow is how long after a reader looked at a key its load may
	// still fill it (TombstoneTTL/2 - Timeout; see docs/cache-tier.md).
	fillWindow time.Duration

	// view is what requests use: the ring of usable nodes and the set of all
	// nodes. It is replaced, never changed, under mu.
	view atomic.Pointer[view]
	// wm is the highest invalidation LSN this process has written or read:
	// a floor for loads when a node has lost its own watermark (restarted).
	wm atomic.Uint64
	// forgedLogged is when a forged entry was last logged (Unix ns).
	forgedLogged atomic.Int64

	mu     sync.Mutex
	nodes  map[string]*node    // nodes in the set, by address
	gone   map[string]*pending // missed invalidations of nodes that left the set
	opened bool
	closed bool

	ctx    context.Context // canceled by Close; parent of background work and loads
	cancel context.CancelFunc
	wg     sync.WaitGroup // the refresh loop and running loads
}

// view is an immutable snapshot of the nodes.
type view struct {
	ring *consistenthash.Ring // nodes whose breaker is closed
	up   map[string]*node     // the same nodes, by address
	all  []*node              // every node in the set, up or not
}

func (v *view) owner(key string) *node {
	if v == nil {
		return nil
	}
	return v.up[v.ring.Get(key)]
}

func validGroup(g string) bool {
	_, err := store.ParseGroup(g)
	return err == nil
}

// wmName is the key (after the prefix) of group's watermark.
func wmName(group string) string {
	if group == store.DefaultGroup {
		return "wm"
	}
	return "wm@" + group
}

// New checks cfg and builds a tier that is not yet following the nodes.
func New(cfg Config) (*Tier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Group, _ = store.ParseGroup(cfg.Group)
	t := &Tier{
		cfg:        cfg,
		log:        cfg.Logger,
		seal:       newSealer(cfg.MACKey),
		wmKey:      cfg.Prefix + wmName(cfg.Group),
		group:      cfg.Group,
		fillWindow: cfg.TombstoneTTL/2 - cfg.Timeout,
		nodes:      map[string]*node{},
		gone:       map[string]*pending{},
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.met = newMetrics(t)
	if cfg.Metrics != nil {
		if err := t.met.register(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("cachetier: register metrics: %w", err)
		}
	}
	return t, nil
}

// Open reads the set of nodes once and starts following it. It does not
// wait for any cache node: a tier with none up serves every lookup from the
// store.
func (t *Tier) Open() error {
	t.mu.Lock()
	if t.opened || t.closed {
		t.mu.Unlock()
		return errors.New("cachetier: open: already opened")
	}
	t.opened = true
	t.mu.Unlock()
	t.refresh()
	t.wg.Add(1)
	go t.loop()
	return nil
}

// Close stops the background work, cancels the contexts of running loads
// and waits for them to return, and closes the connections. Lookups after
// Close bypass the cache.
func (t *Tier) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.view.Store(nil)
	var errs []error
	for _, n := range t.nodes {
		errs = append(errs, n.close())
	}
	t.nodes = map[string]*node{}
	return errors.Join(errs...)
}

// loop follows the node set and probes down nodes until Close. It owns
// every background call to the cache.
func (t *Tier) loop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.RefreshInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			t.refresh()
			t.probe()
			t.prune()
		}
	}
}

// refresh reads the node set and, if it changed, rebuilds the ring: new
// nodes get a client (reused for as long as they stay), nodes that left
// have theirs closed, and what they miss while away is remembered.
func (t *Tier) refresh() {
	var addrs []string
	if t.cfg.Nodes != nil {
		addrs = slices.Clone(t.cfg.Nodes())
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == "" })

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	changed := false
	var closing []*node
	for addr, n := range t.nodes {
		if !slices.Contains(addrs, addr) {
			delete(t.nodes, addr)
			t.gone[addr] = n.leave()
			closing = append(closing, n)
			changed = true
			t.log.Info("cache node left the ring", "cache", addr)
		}
	}
	for _, addr := range addrs {
		if _, ok := t.nodes[addr]; ok {
			continue
		}
		n := newNode(t, addr, t.gone[addr])
		delete(t.gone, addr)
		t.nodes[addr] = n
		changed = true
		if n.isUp() {
			t.log.Info("cache node joined the ring", "cache", addr)
		} else {
			t.log.Info("cache node is back; replaying the invalidations it missed before it joins the ring", "cache", addr)
		}
	}
	if changed {
		t.rebuildLocked()
	}
	t.mu.Unlock()
	for _, n := range closing {
		_ = n.close()
	}
}

// rebuildLocked publishes a new view from t.nodes. t.mu must be held.
func (t *Tier) rebuildLocked() {
	if t.closed {
		return
	}
	v := &view{up: map[string]*node{}}
	var upAddrs []string
	for addr, n := range t.nodes {
		v.all = append(v.all, n)
		if n.isUp() {
			v.up[addr] = n
			upAddrs = append(upAddrs, addr)
		}
	}
	v.ring = consistenthash.New(t.cfg.VirtualNodes, nil, upAddrs...)
	t.view.Store(v)
}

func (t *Tier) rebuild() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rebuildLocked()
}

// probe tries each down node whose cooldown is over: a node that answers
// gets the invalidations it missed and rejoins the ring.
func (t *Tier) probe() {
	v := t.view.Load()
	if v == nil {
		return
	}
	for _, n := range v.all {
		if n.isUp() || !n.dueForProbe(time.Now()) {
			continue
		}
		if n.recover(t.ctx) {
			t.log.Info("cache node is back in the ring", "cache", n.addr)
			t.rebuild()
		}
	}
}

// prune forgets missed invalidations old enough that every value they
// guarded has expired by its TTL.
func (t *Tier) prune() {
	cutoff := time.Now().Add(-(t.cfg.TTL + t.cfg.TombstoneTTL))
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, p := range t.gone {
		if p.prune(cutoff) {
			delete(t.gone, addr)
		}
	}
	for _, n := range t.nodes {
		n.prune(cutoff)
	}
}

// forged counts an entry under key (as the cache holds it, or the
// watermark) that did not verify on node n, and says so in the log at most
// once every forgedLogEvery.
func (t *Tier) forged(n *node, key string) {
	total := t.met.rejected.Add(1)
	now := time.Now().UnixNano()
	last := t.forgedLogged.Load()
	if now-last < int64(forgedLogEvery) || !t.forgedLogged.CompareAndSwap(last, now) {
		return
	}
	t.log.Warn("cache entry failed authentication; ignored and served from the store (forged, damaged, or written by another client or with another key)",
		"key", key, "cache", n.addr, "rejected_total", total)
}

// forgedLogEvery bounds how often forged entries are logged: a cache full
// of them must not flood the log.
const forgedLogEvery = 10 * time.Second

// raiseWM lifts the process's watermark to lsn.
func (t *Tier) raiseWM(lsn uint64) {
	for {
		cur := t.wm.Load()
		if lsn <= cur || t.wm.CompareAndSwap(cur, lsn) {
			return
		}
	}
}

// Stats is the tier's part of the app's /status.
type Stats struct {
	Nodes []NodeStats `json:"nodes"`
	// Hits, Misses and Bypasses count lookups by how they were served.
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
	Bypasses uint64 `json:"bypasses"`
	// HitRatio is Hits over all lookups (0 before the first).
	HitRatio float64 `json:"hit_ratio"`
	// Fills counts values written to the cache after a miss; Loads counts
	// loads from the store, shared by coalesced readers.
	Fills uint64 `json:"fills"`
	Loads uint64 `json:"loads"`
	// Errors counts failed calls to cache nodes.
	Errors uint64 `json:"errors"`
	// Invalidations counts keys invalidated by writes.
	Invalidations uint64 `json:"invalidations"`
	// Rejected counts entries read from the cache that did not verify
	// (forged, damaged, or another client's): each was served from the
	// store instead. Anything above zero deserves a look.
	Rejected uint64 `json:"rejected"`
	// Watermark is the highest invalidation LSN this app has seen.
	Watermark uint64 `json:"watermark"`
}

// NodeStats describes one cache node.
type NodeStats struct {
	Addr string `json:"addr"`
	// Up is false while the node's breaker is open.
	Up bool `json:"up"`
	// Pending counts invalidations waiting to be replayed to the node.
	Pending int `json:"pending,omitempty"`
}

// Stats returns live figures.
func (t *Tier) Stats() Stats {
	s := t.met.snapshot()
	s.Watermark = t.wm.Load()
	if v := t.view.Load(); v != nil {
		for _, n := range v.all {
			s.Nodes = append(s.Nodes, n.stats())
		}
		slices.SortFunc(s.Nodes, func(a, b NodeStats) int {
			if a.Addr < b.Addr {
				return -1
			}
			return 1
		})
	}
	return s
}
