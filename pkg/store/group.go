package store

import (
	"fmt"
	"net/http"
)

// A store group is a set of store nodes that hold one copy of one data set:
// its own primary, replicas, lease, voters, epochs and LSNs (stage 10: a
// group per service, docs/replication.md "Store groups"). A store node is in
// exactly one group (--group); a client reads and writes one group and sees
// only its nodes. LSNs and epochs of different groups count different logs
// and are never compared.

// DefaultGroup is the group of a store node started without --group, the
// one group of stages 1 to 9. It is written "" inside the stack (in
// membership, NodeInfo and ClientConfig) and "default" to people.
const DefaultGroup = ""

// defaultGroupName is how DefaultGroup is spelled in flags, headers and
// status pages.
const defaultGroupName = "default"

// maxGroupLen bounds a group's name: it travels in gossip metadata (512
// bytes for everything) and in headers.
const maxGroupLen = 32

// HeaderGroup names the store group a request is meant for: the Client
// sends it on every request, and a store node of another group refuses the
// request (400) before applying anything. A request without it is served
// by whichever group the node is in (curl).
const HeaderGroup = "X-Store-Group"

// ParseGroup checks a group name as given to --group and returns it in the
// stack's spelling: "" and "default" are DefaultGroup; any other name is 1
// to 32 characters of a-z, 0-9 and '-', starting with a letter or digit.
func ParseGroup(name string) (string, error) {
	if name == "" || name == defaultGroupName {
		return DefaultGroup, nil
	}
	if len(name) > maxGroupLen {
		return "", fmt.Errorf("group %q is longer than %d characters", name, maxGroupLen)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0:
		default:
			return "", fmt.Errorf("group %q: use a-z, 0-9 and '-' (not first), e.g. content", name)
		}
	}
	return name, nil
}

// GroupName returns how group is shown to people: "default" for
// DefaultGroup, else the name itself.
func GroupName(group string) string {
	if group == DefaultGroup {
		return defaultGroupName
	}
	return group
}

// SameGroup reports whether a and b name the same group, either spelling
// of the default group included.
func SameGroup(a, b string) bool { return canonGroup(a) == canonGroup(b) }

// canonGroup writes group as the stack does: "default" as DefaultGroup,
// anything else as it is (ParseGroup is what checks a name).
func canonGroup(group string) string {
	if group == defaultGroupName {
		return DefaultGroup
	}
	return group
}

// InGroup returns a Resolver that lists only the nodes of r in group: what
// a client of that group, and a store node of it, may talk to.
func InGroup(r Resolver, group string) Resolver {
	return groupResolver{r: r, group: group}
}

type groupResolver struct {
	r     Resolver
	group string
}

func (g groupResolver) StoreNodes() []NodeInfo {
	all := g.r.StoreNodes()
	out := all[:0:0]
	for _, n := range all {
		if SameGroup(n.Group, g.group) {
			out = append(out, n)
		}
	}
	return out
}

// SetGroupHeader names group on a request to a store node.
func SetGroupHeader(h http.Header, group string) { h.Set(HeaderGroup, GroupName(group)) }
