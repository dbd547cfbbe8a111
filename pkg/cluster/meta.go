package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
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

// wireMeta is Meta as gossiped. JSON keeps it readable in packet captures
// and lets old and new nodes ignore fields they do not know; short keys,
// omitted defaults and the shared host written once keep it small: a node
// with every role and port takes about 300 bytes of the 512, whatever the
// length of its address.
type wireMeta struct {
	Roles []string `json:"r,omitempty"`
	// Host is the host most addresses share; an address written ":port"
	// in Addrs is on it.
	Host    string            `json:"h,omitempty"`
	Addrs   map[string]string `json:"a,omitempty"`
	Group   string            `json:"g,omitempty"`
	Service string            `json:"s,omitempty"`
	State   string            `json:"st,omitempty"` // empty means up
	// Leaving is set in the last update a node gossips before it leaves,
	// so that peers can tell a graceful leave from a death: memberlist
	// reports both the same way to delegates.
	Leaving bool `json:"x,omitempty"`
}

// leavingReserve is the room kept free for the leaving flag, so that the
// last update before a leave always fits when the metadata did.
const leavingReserve = len(`,"x":true`)

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
	w := wireMeta{Roles: m.Roles, Group: m.Group, Service: m.Service, Leaving: leaving}
	w.Host, w.Addrs = compactAddrs(m.Addrs)
	if m.State != StateUp {
		w.State = m.State
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	size := len(b)
	if !leaving {
		size += leavingReserve
	}
	if size > MetaMaxSize {
		return nil, fmt.Errorf("encode meta: %d bytes, limit %d (fewer roles or shorter addresses): %w",
			size, MetaMaxSize, ErrMetaTooLarge)
	}
	return b, nil
}

// compactAddrs writes the host most addresses share once: it returns that
// host and the addresses with it replaced by ":port". With no host shared
// by two addresses, or an address already starting with ":", it returns
// addrs unchanged.
func compactAddrs(addrs map[string]string) (string, map[string]string) {
	count := map[string]int{}
	for _, a := range addrs {
		if strings.HasPrefix(a, ":") {
			return "", addrs
		}
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			count[h]++
		}
	}
	host, best := "", 1
	for h, n := range count {
		if n > best || n == best && host != "" && h < host {
			host, best = h, n
		}
	}
	if host == "" {
		return "", addrs
	}
	out := make(map[string]string, len(addrs))
	for k, a := range addrs {
		if h, p, err := net.SplitHostPort(a); err == nil && h == host {
			a = ":" + p
		}
		out[k] = a
	}
	return host, out
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
	if w.Host != "" {
		for k, a := range m.Addrs {
			if strings.HasPrefix(a, ":") {
				m.Addrs[k] = net.JoinHostPort(w.Host, a[1:])
			}
		}
	}
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
