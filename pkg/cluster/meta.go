package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// States a node announces in its metadata.
const (
	// StateUp: the node takes new work.
	StateUp = "up"
	// StateDraining: the node finishes what it has and takes nothing new;
	// load balancers and clients stop sending to it while it is still alive.
	StateDraining = "draining"
	// StateStarting: the node has joined but its roles are not serving yet;
	// it takes no work until it announces StateUp. Joining first lets the
	// node find its peers (NATS routes, the primary) while it starts.
	StateStarting = "starting"
)

// MetaMaxSize is the most bytes of encoded metadata memberlist will gossip.
const MetaMaxSize = memberlist.MetaMaxSize

// Meta is what a node tells the cluster about itself. It is gossiped with
// every alive message, so it holds only facts that change rarely; live
// figures are read from the node's /status page.
type Meta struct {
	// Name is the node's name (memberlist carries it; it is not encoded).
	Name string `json:"name"`
	// Roles the node runs, e.g. "lb", "app", "primary", "cache".
	Roles []string `json:"roles,omitempty"`
	// Addrs maps a port's key ("edge", "lb", "app", "store", "cache",
	// "nats", "nats-cluster", "admin", "gossip") to its host:port.
	Addrs map[string]string `json:"addrs,omitempty"`
	// Group is the store group of a store node ("" for the default group).
	Group string `json:"group,omitempty"`
	// Service is the service an app node serves at stage 10 ("" for all).
	Service string `json:"service,omitempty"`
	// State is StateUp, StateDraining or StateStarting; empty is read as StateUp.
	State string `json:"state"`
}

// wireMeta is Meta as gossiped: short keys and omitted defaults keep a
// node with every role and port well under MetaMaxSize (about 250 bytes).
// JSON keeps it readable in packet captures and lets old and new nodes
// ignore fields they do not know.
type wireMeta struct {
	Roles   []string          `json:"r,omitempty"`
	Addrs   map[string]string `json:"a,omitempty"`
	Group   string            `json:"g,omitempty"`
	Service string            `json:"s,omitempty"`
	State   string            `json:"st,omitempty"` // empty means up
	// Leaving is set in the last update a node gossips before it leaves,
	// so that peers can tell a graceful leave from a death: memberlist
	// reports both the same way to delegates.
	Leaving bool `json:"x,omitempty"`
}

func (m Meta) validate() error {
	switch m.State {
	case "", StateUp, StateDraining, StateStarting:
		return nil
	}
	return fmt.Errorf("state %q is not %q, %q or %q", m.State, StateUp, StateDraining, StateStarting)
}

// clone returns a deep copy, so that callers never share slices or maps
// with the Cluster's tables.
func (m Meta) clone() Meta {
	m.Roles = slices.Clone(m.Roles)
	m.Addrs = maps.Clone(m.Addrs)
	return m
}

func (m Meta) equal(o Meta) bool {
	return m.Name == o.Name && slices.Equal(m.Roles, o.Roles) && maps.Equal(m.Addrs, o.Addrs) &&
		m.Group == o.Group && m.Service == o.Service && m.State == o.State
}

// encodeMeta returns the wire form of m, or ErrMetaTooLarge.
func encodeMeta(m Meta, leaving bool) ([]byte, error) {
	w := wireMeta{Roles: m.Roles, Addrs: m.Addrs, Group: m.Group, Service: m.Service, Leaving: leaving}
	if m.State != StateUp {
		w.State = m.State
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("encode meta: %d bytes, limit %d (fewer roles or shorter addresses): %w", len(b), MetaMaxSize, ErrMetaTooLarge)
	}
	return b, nil
}

// decodeMeta parses the wire form gossiped by the node called name. Empty
// input (a node that announced nothing) is a node with no roles, up.
func decodeMeta(name string, b []byte) (m Meta, leaving bool, err error) {
	m = Meta{Name: name, State: StateUp}
	if len(b) == 0 {
		return m, false, nil
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return m, false, fmt.Errorf("decode meta of %s: %w", name, err)
	}
	m.Roles, m.Addrs, m.Group, m.Service = w.Roles, w.Addrs, w.Group, w.Service
	if w.State != "" {
		m.State = w.State
	}
	return m, w.Leaving, nil
}

// Status is a member's liveness as this node sees it.
type Status string

// Member statuses. memberlist v0.7.0 does not tell delegates when a member
// becomes suspect, so a suspect member reads as alive until it is declared
// dead (or refutes the suspicion).
const (
	// StatusAlive: the member answers probes (or is suspect, see above).
	StatusAlive Status = "alive"
	// StatusDead: the member stopped answering and was declared dead by
	// failure detection; it may come back.
	StatusDead Status = "dead"
	// StatusLeft: the member left gracefully (Close).
	StatusLeft Status = "left"
)

// Member is one node of the cluster as seen from here.
type Member struct {
	Meta
	// Addr is the member's gossip address, host:port.
	Addr string `json:"addr"`
	// Status is alive, dead or left.
	Status Status `json:"status"`
	// Since is when Status last changed, as observed by this node.
	Since time.Time `json:"since"`
}

// HasRole reports whether the member runs role r.
func (m Member) HasRole(r string) bool { return slices.Contains(m.Roles, r) }

// RoleAddr returns the address of the member's port for key r ("lb",
// "store", "nats", ...), or "" if it announced none.
func (m Member) RoleAddr(r string) string { return m.Addrs[r] }

// Up reports whether the member is alive and takes new work (not draining).
func (m Member) Up() bool {
	return m.Status == StatusAlive && (m.State == StateUp || m.State == "")
}

func (m Member) clone() Member {
	m.Meta = m.Meta.clone()
	return m
}
