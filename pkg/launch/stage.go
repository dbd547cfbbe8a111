package launch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Stage is a preset topology of `node up --stage N`: the nodes to start and
// the one URL a person opens.
type Stage struct {
	// Number is the stage number of DESIGN.md (1 to 10).
	Number int `json:"number"`
	// Title names what the stage adds, e.g. "separate database".
	Title string `json:"title"`
	// Nodes are the groups of nodes, in start order. Earlier groups are
	// started first, so put what others depend on (the store) first.
	Nodes []NodeSpec `json:"nodes"`
	// Open says which node's port is the URL to open: the first node of
	// the group with this prefix.
	Open Endpoint `json:"open"`
}

// NodeSpec is a group of identical nodes of a stage.
type NodeSpec struct {
	// Prefix names the nodes: prefix-1, prefix-2, ...
	Prefix string `json:"prefix"`
	// Roles are the node's roles, as given to `node run --roles`.
	Roles []string `json:"roles"`
	// Count is how many nodes of this group run (--scale changes it).
	Count int `json:"count"`
	// Flags are extra `node run` flags of every node of the group, e.g.
	// "--sessions=memory".
	Flags []string `json:"flags,omitempty"`
}

// Endpoint names a port of a node group: the URL a person opens.
type Endpoint struct {
	// Prefix is the NodeSpec.Prefix of the node whose port it is.
	Prefix string `json:"prefix"`
	// Port is the port key of cluster membership: "app", "lb", "edge", ...
	Port string `json:"port"`
}

// stages is the one table of stage presets. Adding a stage is adding an
// entry here (and a section to docs/stages.md); everything else (the
// planner, `node up`, `node add`, the docs' commands) reads this table.
// Flags shared by several stages.
var (
	// replicated: a store node acknowledges a write only once a replica
	// has it durable, and takes part in lease-based failover.
	replicated = []string{"--store-sync=1", "--store-failover"}
	// statelessApp: reads from replicas, the cache tier, and sessions in
	// the cache with the store as the durable copy.
	statelessApp = []string{"--reads=replicas", "--cache=on", "--sessions=shared"}
	// queuedApp: statelessApp, with side effects published as jobs.
	queuedApp = []string{"--reads=replicas", "--cache=on", "--sessions=shared", "--jobs=queue"}
	// edgeFlags: requests carrying the session cookie go straight to the
	// origin, so a logged-in user's pages never pass through the shared cache.
	edgeFlags = []string{"--edge-pass-cookie=blog_session"}
)

// Node groups that several stages share.
var (
	dbReplicated = NodeSpec{Prefix: "db", Roles: []string{"primary"}, Count: 1, Flags: replicated}
	twoReplicas  = NodeSpec{Prefix: "replica", Roles: []string{"replica"}, Count: 2, Flags: replicated}
	stickyLB     = NodeSpec{Prefix: "lb", Roles: []string{"lb"}, Count: 1, Flags: []string{"--sticky"}}
	oneEdge      = NodeSpec{Prefix: "edge", Roles: []string{"edge"}, Count: 1, Flags: edgeFlags}
	// Workers run the app's cache tier too, so their writes invalidate it.
	twoWorkers = NodeSpec{Prefix: "worker", Roles: []string{"worker"}, Count: 2, Flags: []string{"--cache=on"}}
)

func stages() []Stage {
	return []Stage{
		{
			Number: 1, Title: "single server",
			Nodes: []NodeSpec{{Prefix: "node", Roles: []string{"app", "primary"}, Count: 1}},
			Open:  Endpoint{Prefix: "node", Port: "app"},
		},
		{
			Number: 2, Title: "separate database",
			Nodes: []NodeSpec{
				{Prefix: "db", Roles: []string{"primary"}, Count: 1},
				{Prefix: "app", Roles: []string{"app"}, Count: 1},
			},
			Open: Endpoint{Prefix: "app", Port: "app"},
		},
		{
			// Sessions still live in each app's memory, so the lb keeps a
			// user on one app (--sticky).
			Number: 3, Title: "load balancer",
			Nodes: []NodeSpec{
				{Prefix: "db", Roles: []string{"primary"}, Count: 1},
				{Prefix: "app", Roles: []string{"app"}, Count: 2},
				stickyLB,
			},
			Open: Endpoint{Prefix: "lb", Port: "lb"},
		},
		{
			// Every store node gets --store-sync 1 and --store-failover, since any of them
			// may become the primary; three vote on the lease, so the group
			// survives losing any one.
			Number: 4, Title: "replication",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: []string{"--reads=replicas"}},
				stickyLB,
			},
			Open: Endpoint{Prefix: "lb", Port: "lb"},
		},
		{
			// Stage 4 plus a cache node: the apps read through it (cache-aside).
			Number: 5, Title: "cache",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "cache", Roles: []string{"cache"}, Count: 1},
				{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: []string{"--reads=replicas", "--cache=on"}},
				stickyLB,
			},
			Open: Endpoint{Prefix: "lb", Port: "lb"},
		},
		{
			// Stage 5 plus an edge in front of the lb; the URL to open is the edge's.
			Number: 6, Title: "CDN edge",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "cache", Roles: []string{"cache"}, Count: 1},
				{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: []string{"--reads=replicas", "--cache=on"}},
				stickyLB,
				oneEdge,
			},
			Open: Endpoint{Prefix: "edge", Port: "edge"},
		},
		{
			// Sessions move to the cache with the store as the durable copy, so
			// the lb drops stickiness and any app node can die without logging
			// anyone out.
			Number: 7, Title: "stateless app servers",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "cache", Roles: []string{"cache"}, Count: 1},
				{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: statelessApp},
				{Prefix: "lb", Roles: []string{"lb"}, Count: 1},
				oneEdge,
			},
			Open: Endpoint{Prefix: "edge", Port: "edge"},
		},
		{
			// Stage 7 plus two workers: the apps publish side effects as jobs.
			Number: 8, Title: "queues and workers",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "cache", Roles: []string{"cache"}, Count: 1},
				twoWorkers,
				{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: queuedApp},
				{Prefix: "lb", Roles: []string{"lb"}, Count: 1},
				oneEdge,
			},
			Open: Endpoint{Prefix: "edge", Port: "edge"},
		},
		{
			// More of every stateless role, and the cache sharded over two
			// nodes; `node up --scale app=6` grows it further.
			Number: 9, Title: "horizontal scaling",
			Nodes: []NodeSpec{
				dbReplicated,
				twoReplicas,
				{Prefix: "cache", Roles: []string{"cache"}, Count: 2},
				twoWorkers,
				{Prefix: "app", Roles: []string{"app"}, Count: 4, Flags: queuedApp},
				{Prefix: "lb", Roles: []string{"lb"}, Count: 2},
				oneEdge,
			},
			Open: Endpoint{Prefix: "edge", Port: "edge"},
		},
	}
}

// designedStages is how many stages DESIGN.md describes; a stage number in
// range that is not in the table is "not built yet" rather than unknown.
const designedStages = 10

// Stages returns every stage this build can start, in order.
func Stages() []Stage { return stages() }

// LatestStage returns the highest stage built, the default of --stage.
func LatestStage() Stage {
	s := stages()
	return s[len(s)-1]
}

// LookupStage returns stage n, or an error that lists the stages there are.
func LookupStage(n int) (Stage, error) {
	all := stages()
	for _, s := range all {
		if s.Number == n {
			return s, nil
		}
	}
	var names []string
	for _, s := range all {
		names = append(names, fmt.Sprintf("%d (%s)", s.Number, s.Title))
	}
	list := strings.Join(names, ", ")
	if n >= 1 && n <= designedStages {
		return Stage{}, fmt.Errorf("stage %d is designed but not built yet in this version: stages you can start are %s", n, list)
	}
	return Stage{}, fmt.Errorf("there is no stage %d: stages you can start are %s", n, list)
}

// String is "stage N (title)".
func (s Stage) String() string { return fmt.Sprintf("stage %d (%s)", s.Number, s.Title) }

// clone returns a deep copy, so that scaling never edits the table.
func (s Stage) clone() Stage {
	s.Nodes = slices.Clone(s.Nodes)
	for i := range s.Nodes {
		s.Nodes[i].Roles = slices.Clone(s.Nodes[i].Roles)
		s.Nodes[i].Flags = slices.Clone(s.Nodes[i].Flags)
	}
	return s
}

// ParseScale parses --scale: "role=K[,role=K...]", e.g. "app=3,replica=2".
// K is 0 to 64; a role given twice is an error.
func ParseScale(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		role, k, ok := strings.Cut(f, "=")
		role = strings.TrimSpace(role)
		if !ok || role == "" {
			return nil, fmt.Errorf("--scale %q: want role=count, e.g. app=3", f)
		}
		n, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil || n < 0 || n > maxScale {
			return nil, fmt.Errorf("--scale %s: count %q must be a number from 0 to %d", role, k, maxScale)
		}
		if _, dup := out[role]; dup {
			return nil, fmt.Errorf("--scale: role %q given twice", role)
		}
		out[role] = n
	}
	return out, nil
}

// maxScale bounds one group: each node is a process of tens of MiB.
const maxScale = 64

// Scale returns the stage with the group of each role resized; more than
// one primary is an error (the caller checks the role names: node run
// knows them). A role the
// stage runs in a group of its own is resized (0 removes the group, unless
// it holds the URL to open); a role the stage does not run gets a new group
// named after it, started last; a role that shares its nodes with other
// roles (stage 1's app,primary) cannot be scaled alone.
func (s Stage) Scale(counts map[string]int) (Stage, error) {
	s = s.clone()
	roles := make([]string, 0, len(counts))
	for r := range counts {
		roles = append(roles, r)
	}
	slices.Sort(roles) // a deterministic order for the new groups
	for _, role := range roles {
		n := counts[role]
		if role == "primary" && n > 1 {
			return Stage{}, fmt.Errorf("--scale primary=%d: a stack has one primary; --scale replica=%d adds store nodes that follow it", n, n-1)
		}
		i := slices.IndexFunc(s.Nodes, func(ns NodeSpec) bool { return slices.Contains(ns.Roles, role) })
		switch {
		case i < 0:
			if err := s.canAdd(role); n > 0 && err != nil {
				return Stage{}, fmt.Errorf("--scale %s: %w", role, err)
			}
			if n > 0 {
				s.Nodes = append(s.Nodes, NodeSpec{Prefix: role, Roles: []string{role}, Count: n})
			}
		case len(s.Nodes[i].Roles) > 1:
			return Stage{}, fmt.Errorf("--scale %s: in %s the %s role shares its nodes with %s; scale a stage where it runs alone",
				role, s, role, strings.Join(slices.DeleteFunc(slices.Clone(s.Nodes[i].Roles), func(r string) bool { return r == role }), ","))
		case n == 0 && s.Nodes[i].Prefix == s.Open.Prefix:
			return Stage{}, fmt.Errorf("--scale %s=0: %s needs at least one %s node, it serves the URL to open", role, s, role)
		case n == 0:
			s.Nodes = slices.Delete(s.Nodes, i, i+1)
		default:
			s.Nodes[i].Count = n
		}
	}
	return s, nil
}

// ownFlagRoles are the roles whose nodes need flags of their own that no
// default can give: a service node runs one named service (--service) over
// its own store group. Only a stage that already runs such a group can
// grow it; stage 10's preset is not built yet.
var ownFlagRoles = []string{"service"}

// canAdd says why a node of role cannot be added to the stage (node add,
// --scale), or nil.
func (s Stage) canAdd(role string) error {
	if !slices.Contains(ownFlagRoles, role) {
		return nil
	}
	for _, ns := range s.Nodes {
		if len(ns.Roles) == 1 && ns.Roles[0] == role {
			return nil
		}
	}
	return fmt.Errorf("a %s node needs flags of its own (--service NAME, its store group) that %s does not give: stage 10 is designed but not built yet; run one by hand as docs/api.md, \"Payments service\", shows", role, s)
}

// specFor returns the group a new node of role joins in `node add ROLE`: the
// stage's group that runs exactly that role, or a new group named after it.
func (s Stage) specFor(role string) NodeSpec {
	for _, ns := range s.Nodes {
		if len(ns.Roles) == 1 && ns.Roles[0] == role {
			return ns
		}
	}
	return NodeSpec{Prefix: role, Roles: []string{role}}
}

// WithRoleFlag returns the stage with one more `node run` flag on every
// group that runs a role: spec is "role=--flag=value" (`node up --flags`),
// e.g. "edge=--edge-origin-latency=50ms". It is how a run changes a setting of
// one role without a new preset; the environment cannot do it, since
// NODE_* variables are kept from the children.
func (s Stage) WithRoleFlag(spec string) (Stage, error) {
	role, flag, ok := strings.Cut(strings.TrimSpace(spec), "=")
	if !ok || role == "" || !strings.HasPrefix(flag, "-") || strings.Trim(flag, "-") == "" {
		return Stage{}, fmt.Errorf("--flags %q: want role=--flag=value, e.g. edge=--edge-origin-latency=50ms", spec)
	}
	s = s.clone()
	found := false
	for i := range s.Nodes {
		if slices.Contains(s.Nodes[i].Roles, role) {
			s.Nodes[i].Flags = append(s.Nodes[i].Flags, flag)
			found = true
		}
	}
	if !found {
		return Stage{}, fmt.Errorf("--flags %s: %s runs no %s node", spec, s, role)
	}
	return s, nil
}
