package cluster

import (
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate receives memberlist's callbacks. memberlist calls them with its
// node lock held, one at a time, from its gossip and probe goroutines, so
// each must return quickly and must not call back into memberlist.
type delegate struct {
	c *Cluster
}

// NodeMeta returns the encoded local metadata, which New and SetMeta keep
// within limit.
func (d *delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	return slices.Clone(d.c.localWire)
}

// The user-message hooks are unused: everything gossiped is in the metadata.
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.c.observe(EventJoin, n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.c.observe(EventUpdate, n) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.c.observe(EventLeave, n) }

// NotifyConflict is called when a node announces a name that another alive
// (or recently dead) address holds; memberlist keeps the existing one.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.c.log.Warn("a node announced a name held by another address; keeping the existing one until it has been dead for the reclaim time (names must be unique)",
		"member", existing.Name, "addr", existing.Address(), "other_addr", other.Address(),
		"reclaim_after", d.c.cfg.DeadNodeReclaimTime)
}

// observe records a change reported by memberlist, logs it and queues it for
// subscribers.
func (c *Cluster) observe(kind EventKind, n *memberlist.Node) {
	meta, leaving, err := decodeMeta(n.Name, n.Meta)
	if err != nil {
		c.log.Warn("ignoring unreadable metadata", "member", n.Name, "err", err)
	}
	status := StatusAlive
	if kind == EventLeave {
		status = StatusDead
		if leaving {
			status = StatusLeft
		}
	}
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	now := time.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	prev, known := c.members[n.Name]
	if kind == EventUpdate && known && prev.Status == StatusAlive && prev.Addr == addr && prev.Meta.equal(meta) {
		return // only the leaving flag changed; the leave itself follows
	}
	m := &Member{Meta: meta, Addr: addr, Status: status, Since: now}
	if known && prev.Status == status {
		m.Since = prev.Since
	}
	c.members[n.Name] = m

	alive := c.numAliveLocked()
	if status == StatusLeft && c.maxAlive > alive {
		c.maxAlive-- // it chose to go: nothing to re-join
	}
	c.maxAlive = max(c.maxAlive, alive)
	c.pruneLocked(now)

	switch {
	case kind == EventJoin:
		c.log.Info("member joined", "member", m.Name, "addr", m.Addr, "roles", m.Roles, "state", m.State, "alive", alive)
	case kind == EventUpdate:
		c.log.Info("member updated", "member", m.Name, "roles", m.Roles, "state", m.State)
	case status == StatusLeft:
		c.log.Info("member left", "member", m.Name, "addr", m.Addr, "alive", alive)
	default:
		c.log.Info("member failed", "member", m.Name, "addr", m.Addr, "alive", alive)
	}
	for s := range c.subs {
		s.push(Event{Kind: kind, Member: m.clone()})
	}
}

// pruneLocked forgets members dead or left for longer than ForgetAfter.
func (c *Cluster) pruneLocked(now time.Time) {
	for name, m := range c.members {
		if m.Status != StatusAlive && now.Sub(m.Since) > c.cfg.ForgetAfter {
			delete(c.members, name)
		}
	}
}
