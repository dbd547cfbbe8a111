// Package cluster is the membership layer of scalestack: every node embeds
// it to find the others. It wraps hashicorp/memberlist (SWIM gossip over UDP
// and TCP) and adds what the roles need: each node's metadata (roles, the
// address of each role's port, store group, service, up or draining),
// queries such as "alive nodes with role app", membership events to
// subscribers, re-joining the seeds after a partition or a restart of all
// peers, a graceful leave, and encryption with the cluster key.
//
// Role packages do not import this package; each declares the small
// interface it needs ("the current app backends") and the node wires it to
// a Cluster. See docs/cluster.md for the failure-detection timing.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's view of the cluster and its voice in it.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	seeds   []string // normalized host:port
	metrics *metrics

	readyCh chan struct{}
	setMu   sync.Mutex // serializes SetMeta, which calls into memberlist

	// Set by Open, read-only afterwards.
	list   *memberlist.Memberlist
	ctx    context.Context // cancelled by Close: stops the re-join loop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the re-join loop and join attempts

	// mu guards everything below. It is taken inside memberlist's delegate
	// callbacks (which hold memberlist's own lock), so nothing may call into
	// memberlist while holding it.
	mu        sync.Mutex
	phase     phase
	local     Meta
	localWire []byte // encoded local, returned to memberlist by NodeMeta
	members   map[string]*Member
	maxAlive  int // most alive members seen, less those that left since
	subs      map[*subscription]struct{}
}

type phase int

const (
	phaseNew phase = iota
	phaseOpening
	phaseOpen
	phaseClosing
	phaseClosed
)

// New checks cfg and returns a Cluster that is not yet bound; Open starts it.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Seeds = slices.Clone(cfg.Seeds)
	cfg.SecretKey = slices.Clone(cfg.SecretKey)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	local := cfg.Meta.clone()
	local.Name = cfg.Name
	if local.State == "" {
		local.State = StateUp
	}
	wire, err := encodeMeta(local, false)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		cfg:       cfg,
		log:       logger,
		readyCh:   make(chan struct{}),
		local:     local,
		localWire: wire,
		members:   make(map[string]*Member),
		subs:      make(map[*subscription]struct{}),
	}
	for _, s := range cfg.Seeds {
		n, _ := normalizeSeed(s) // checked by Validate
		c.seeds = append(c.seeds, canonicalAddr(n))
	}
	c.metrics = newMetrics(c)
	return c, nil
}

// Open binds the gossip port, joins the seeds and starts the re-join loop.
// Seeds that cannot be reached are not an error: the node starts alone, and
// the re-join loop keeps trying them every RejoinInterval. The first join
// attempt takes at most TCPTimeout.
func (c *Cluster) Open() error {
	c.mu.Lock()
	if c.phase != phaseNew {
		c.mu.Unlock()
		return errors.New("cluster: open: already opened")
	}
	c.phase = phaseOpening
	c.mu.Unlock()
	opened := false
	defer func() {
		if !opened {
			c.mu.Lock()
			c.phase = phaseNew
			c.mu.Unlock()
		}
	}()

	d := &delegate{c: c}
	mlc := memberlist.DefaultLANConfig()
	mlc.Name = c.cfg.Name
	mlc.BindAddr = c.cfg.BindAddr
	mlc.BindPort = c.cfg.BindPort
	mlc.AdvertiseAddr = c.cfg.AdvertiseAddr
	mlc.AdvertisePort = c.cfg.AdvertisePort
	if mlc.AdvertisePort == 0 {
		mlc.AdvertisePort = c.cfg.BindPort // memberlist fills it in itself when BindPort is 0
	}
	mlc.SecretKey = c.cfg.SecretKey
	mlc.ProbeInterval = c.cfg.ProbeInterval
	mlc.ProbeTimeout = c.cfg.ProbeTimeout
	mlc.SuspicionMult = c.cfg.SuspicionMult
	mlc.SuspicionMaxTimeoutMult = c.cfg.SuspicionMaxTimeoutMult
	mlc.GossipInterval = c.cfg.GossipInterval
	mlc.PushPullInterval = c.cfg.PushPullInterval
	mlc.GossipToTheDeadTime = c.cfg.PushPullInterval
	mlc.TCPTimeout = c.cfg.TCPTimeout
	mlc.DeadNodeReclaimTime = c.cfg.DeadNodeReclaimTime
	mlc.Delegate = d
	mlc.Events = d
	mlc.Conflict = d
	mlc.Logger = newMemberlistLogger(c.log)

	list, err := memberlist.Create(mlc)
	if err != nil {
		return fmt.Errorf("cluster: open: %w", err)
	}
	if c.cfg.Registerer != nil {
		if err := c.metrics.register(c.cfg.Registerer); err != nil {
			_ = list.Shutdown()
			return fmt.Errorf("cluster: open: %w", err)
		}
	}
	c.mu.Lock()
	c.list = list
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.phase = phaseOpen
	c.mu.Unlock()
	opened = true

	c.log.Info("gossip listening", "addr", c.Addr(), "encrypted", len(c.cfg.SecretKey) > 0,
		"seeds", c.seeds, "probe_interval", c.cfg.ProbeInterval)
	if targets := c.withoutSelf(c.seeds); len(targets) > 0 {
		n, err := c.join(c.ctx, targets)
		if err != nil {
			c.log.Warn("no seed reachable, starting alone and re-joining in the background",
				"seeds", targets, "retry_every", c.cfg.RejoinInterval, "err", err)
		} else {
			c.log.Info("joined cluster", "seeds_contacted", n, "alive", c.NumAlive())
		}
	}
	c.wg.Add(1)
	go c.rejoinLoop()
	close(c.readyCh)
	return nil
}

// Ready reports whether Open has completed and Close has not begun.
func (c *Cluster) Ready() bool {
	select {
	case <-c.readyCh:
	default:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phase == phaseOpen
}

// ReadyCh is closed when Open has bound the port and made its first join
// attempt.
func (c *Cluster) ReadyCh() <-chan struct{} { return c.readyCh }

// Addr returns the gossip address other nodes reach this one at (host:port),
// or "" before Open.
func (c *Cluster) Addr() string {
	c.mu.Lock()
	list := c.list
	c.mu.Unlock()
	if list == nil {
		return ""
	}
	n := list.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Close leaves the cluster gracefully, so that peers mark this node left at
// once instead of detecting its failure, and stops gossip. Order: stop the
// re-join loop first, so it cannot re-join while we leave; gossip a last
// metadata update flagged "leaving" and then the leave itself, each waiting
// up to LeaveTimeout for the broadcast, because the flag is how peers tell
// a leave from a death; only then shut the listeners, which the broadcasts
// need; close subscriber channels last, so they carry our own leave.
func (c *Cluster) Close() error { return c.stop(true) }

// Shutdown stops gossip without telling anyone, as a crash would: peers
// declare this node dead after the failure-detection time. Tests use it to
// simulate a killed node; a node shutting down normally calls Close.
func (c *Cluster) Shutdown() error { return c.stop(false) }

func (c *Cluster) stop(leave bool) error {
	c.mu.Lock()
	if c.phase != phaseOpen {
		if c.phase == phaseNew {
			c.phase = phaseClosed
		}
		c.mu.Unlock()
		return nil
	}
	c.phase = phaseClosing
	c.mu.Unlock()

	c.cancel()
	c.wg.Wait()
	// Let a SetMeta in flight finish first; none can start after phaseOpen.
	c.setMu.Lock()
	defer c.setMu.Unlock()

	var errs []error
	if leave {
		c.mu.Lock()
		if wire, err := encodeMeta(c.local, true); err == nil { // fits: encodeMeta keeps room for the flag
			c.localWire = wire
		}
		c.mu.Unlock()
		if err := c.list.UpdateNode(c.cfg.LeaveTimeout); err != nil {
			c.log.Debug("leaving flag not confirmed sent", "err", err)
		}
		if err := c.list.Leave(c.cfg.LeaveTimeout); err != nil {
			// Not fatal: peers that missed it detect the failure instead.
			c.log.Warn("leave not confirmed sent; peers will detect the failure", "err", err)
		} else {
			c.log.Info("left cluster")
		}
	}
	if err := c.list.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: shutdown: %w", err))
	}
	if !leave {
		c.log.Info("gossip stopped without leaving")
	}

	c.mu.Lock()
	subs := c.subs
	c.subs = make(map[*subscription]struct{})
	c.phase = phaseClosed
	c.mu.Unlock()
	for s := range subs {
		s.close()
	}
	if c.cfg.Registerer != nil {
		c.metrics.unregister(c.cfg.Registerer)
	}
	return errors.Join(errs...)
}

// Join contacts the given gossip addresses ("host:port" or "host") now and
// merges their view of the cluster, returning how many answered. The seeds
// are joined by Open and the re-join loop; Join is for adding a node to a
// running cluster by hand. It waits up to TCPTimeout, or until ctx is done.
func (c *Cluster) Join(ctx context.Context, addrs ...string) (int, error) {
	var targets []string
	for _, a := range addrs {
		n, err := normalizeSeed(a)
		if err != nil {
			return 0, fmt.Errorf("cluster: join: %w", err)
		}
		targets = append(targets, canonicalAddr(n))
	}
	targets = c.withoutSelf(targets)
	if len(targets) == 0 {
		return 0, nil
	}
	return c.join(ctx, targets)
}

// join contacts every target concurrently (memberlist tries a list one at a
// time, so unreachable seeds would add up) and reports how many answered.
func (c *Cluster) join(ctx context.Context, targets []string) (int, error) {
	results := make(chan error, len(targets))
	c.mu.Lock()
	if c.phase != phaseOpen {
		c.mu.Unlock()
		return 0, fmt.Errorf("cluster: join: %w", ErrClosed)
	}
	// Added under mu so that stop, which waits for wg after leaving
	// phaseOpen, never races with an Add.
	c.wg.Add(len(targets))
	c.mu.Unlock()
	for _, t := range targets {
		go func() {
			defer c.wg.Done()
			_, err := c.list.Join([]string{t})
			results <- err
		}()
	}
	ok := 0
	var errs []error
	for range targets {
		select {
		case err := <-results:
			if err != nil {
				errs = append(errs, flatten(err)...)
			} else {
				ok++
			}
		case <-ctx.Done():
			// The attempts still running end within TCPTimeout; wg tracks them.
			if ok > 0 {
				return ok, nil
			}
			return 0, fmt.Errorf("cluster: join: %w", ctx.Err())
		}
	}
	if ok == 0 {
		return 0, fmt.Errorf("cluster: join: %w%s", joinErr(errs), joinHint(errs))
	}
	return ok, nil
}

// joinHint adds the usual remedy when a join failed over encryption:
// memberlist names the symptom (a key that cannot decrypt, or one side
// without a key) but not the flag to fix.
func joinHint(errs []error) string {
	for _, err := range errs {
		if strings.Contains(err.Error(), "crypt") {
			return " (every node must use the same --cluster-key)"
		}
	}
	return ""
}

// joinErr joins errs on one line, as a log line wants them, keeping each
// for errors.Is.
func joinErr(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return multiError(errs)
}

type multiError []error

func (e multiError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e multiError) Unwrap() []error { return e }

// flatten returns the errors inside a memberlist join error, which wraps
// them in a multi-line list.
func flatten(err error) []error {
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		return w.WrappedErrors()
	}
	return []error{err}
}

// withoutSelf drops this node's own address from targets.
func (c *Cluster) withoutSelf(targets []string) []string {
	self := map[string]bool{canonicalAddr(c.Addr()): true}
	c.mu.Lock()
	list := c.list
	c.mu.Unlock()
	if list != nil {
		port := strconv.Itoa(int(list.LocalNode().Port))
		self[canonicalAddr(net.JoinHostPort(c.cfg.BindAddr, port))] = true
		if ip := net.ParseIP(c.cfg.BindAddr); ip != nil && ip.IsUnspecified() {
			self[net.JoinHostPort("127.0.0.1", port)] = true
			self[net.JoinHostPort("localhost", port)] = true
		}
	}
	var out []string
	for _, t := range targets {
		if !self[t] {
			out = append(out, t)
		}
	}
	return out
}

// canonicalAddr writes an IP host:port in one spelling, so that a seed and a
// member's address compare equal; other addresses are returned unchanged.
func canonicalAddr(hp string) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	if ip := net.ParseIP(host); ip != nil {
		return net.JoinHostPort(ip.String(), port)
	}
	return hp
}

// Subscribe returns a channel of membership events and a function that
// ends the subscription and closes the channel (Close ends all of them).
// The channel first carries a join event for every member alive at the time
// of the call, then every change. Delivery never blocks gossip: while the
// subscriber is behind, a newer event about a member replaces the one still
// queued for it (a queued join stays a join), so a slow subscriber skips
// intermediate states but always receives each member's latest one. Treat
// join and update alike as "this member now looks like this".
func (c *Cluster) Subscribe(buffer int) (<-chan Event, func()) {
	if buffer < 0 {
		buffer = 0
	}
	s := newSubscription(buffer, c.metrics.coalesced.Inc)
	go s.run()
	c.mu.Lock()
	if c.phase == phaseClosing || c.phase == phaseClosed {
		c.mu.Unlock()
		s.close()
		return s.out, func() {}
	}
	for _, m := range c.sortedLocked() {
		if m.Status == StatusAlive {
			s.push(Event{Kind: EventJoin, Member: m})
		}
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	cancel := func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
		s.close()
	}
	return s.out, cancel
}

// SetState announces a new state (StateUp or StateDraining); see SetMeta.
func (c *Cluster) SetState(ctx context.Context, state string) error {
	return c.SetMeta(ctx, func(m *Meta) { m.State = state })
}

// SetMeta changes the local metadata with fn and gossips it. The change is
// local and queued for gossip when SetMeta returns; it waits until the
// update has been sent to peers, or LeaveTimeout, or ctx is done, so that,
// for instance, a node marked draining is known as such before it stops
// taking work. Metadata that is invalid or encodes to more than MetaMaxSize
// bytes is refused and nothing changes.
func (c *Cluster) SetMeta(ctx context.Context, fn func(*Meta)) error {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	c.mu.Lock()
	if c.phase != phaseOpen {
		c.mu.Unlock()
		return fmt.Errorf("cluster: set meta: %w", ErrClosed)
	}
	m := c.local.clone()
	c.mu.Unlock()

	fn(&m)
	m.Name = c.cfg.Name
	if m.State == "" {
		m.State = StateUp
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("cluster: set meta: %w", err)
	}
	wire, err := encodeMeta(m, false)
	if err != nil {
		return fmt.Errorf("cluster: set meta: %w", err)
	}
	c.mu.Lock()
	c.local, c.localWire = m, wire
	c.mu.Unlock()

	timeout := c.cfg.LeaveTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := c.list.UpdateNode(timeout); err != nil {
		// The update stays queued and spreads anyway.
		c.log.Debug("metadata update not confirmed sent", "err", err)
	}
	return nil
}

// Members returns every known member, this node included, sorted by name.
// Dead and left members stay listed for ForgetAfter.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sortedLocked()
}

// Alive returns the alive members that run role, in any state (draining
// included), sorted by name. An empty role matches every member. Use it for
// what must reach every live node, such as forming the NATS cluster.
func (c *Cluster) Alive(role string) []Member {
	return c.filter(func(m *Member) bool {
		return m.Status == StatusAlive && (role == "" || m.HasRole(role))
	})
}

// Up returns the alive members that run role and are up (not draining),
// sorted by name: where new work should go. An empty role matches every
// member.
func (c *Cluster) Up(role string) []Member {
	return c.filter(func(m *Member) bool {
		return m.Up() && (role == "" || m.HasRole(role))
	})
}

// NumAlive returns the number of alive members, this node included.
func (c *Cluster) NumAlive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.numAliveLocked()
}

// Local returns this node as a member, with its current metadata.
func (c *Cluster) Local() Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := Member{Meta: c.local.clone(), Status: StatusAlive}
	if self, ok := c.members[c.cfg.Name]; ok {
		m.Addr, m.Status, m.Since = self.Addr, self.Status, self.Since
	}
	return m
}

func (c *Cluster) filter(keep func(*Member) bool) []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Member
	for _, m := range c.members {
		if keep(m) {
			out = append(out, m.clone())
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) sortedLocked() []Member {
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m.clone())
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) numAliveLocked() int {
	n := 0
	for _, m := range c.members {
		if m.Status == StatusAlive {
			n++
		}
	}
	return n
}
