package launch

import (
	"cmp"
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
	// Service is the service every node of the group serves (`node run
	// --service`), for a group of service nodes; "" otherwise.
	Service string `json:"service,omitempty"`
	// Group is the store group of the group's nodes (`node run --group`):
	// the group a store node elects, replicates and fails over in, or the
	// one a service node's store client uses. "" is the one group of
	// stages 1 to 9.
	Group string `json:"group,omitempty"`
	// First is the number of the group's first node; zero means 1. A store
	// group's replicas continue its primary's numbering under one prefix:
	// content-db-1 is the primary, content-db-2 and content-db-3 follow it.
	First int `json:"first,omitempty"`
}

// first returns the number of the group's first node.
func (ns NodeSpec) first() int { return max(ns.First, 1) }

// RunFlags are the `node run` flags of every node of the group beyond its
// name, address and roles: --service and --group, then Flags.
func (ns NodeSpec) RunFlags() []string {
	var out []string
	if ns.Service != "" {
		out = append(out, "--service="+ns.Service)
	}
	if ns.Group != "" {
		out = append(out, "--group="+ns.Group)
	}
	return append(out, ns.Flags...)
}

// runsOnly reports whether the group's nodes run role and nothing else.
func (ns NodeSpec) runsOnly(role string) bool { return len(ns.Roles) == 1 && ns.Roles[0] == role }

// inGroup reports whether the group's nodes belong to store group or
// service name g.
func (ns NodeSpec) inGroup(g string) bool { return ns.Group == g || ns.Service == g }

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
		stage10(),
	}
}

// Services returns stage 10's services (issue 18), in start order: each
// runs as a group of instances named after it (content-1, content-2, ...)
// over a store group of its own (content-db-1, content-db-2, ...).
func Services() []string {
	return []string{"users", "content", "search", "notifications", "payments"}
}

// remoteServices makes an app or a worker a gateway: its services are rpc
// clients of the service nodes found in membership, not packages in its
// process.
const remoteServices = "--app-services=remote"

// stage10 is the microservices stage: per service, a store group of three
// (a primary and two replicas, with failover) and one instance; in front,
// the gateway apps, a worker, a cache node, an lb and an edge.
//
// Why three store nodes and not two: the lease needs a majority of the
// group's voters, and the majority of two is two. With one replica,
// losing either node would stop the group's writes instead of failing
// over; with two, the group survives losing any one, as stage 4's did.
//
// Why so few of the rest: the stack is 26 processes on one machine.
// Only the first store node of each group embeds a NATS server (five in
// all; the job and event streams keep three replicas of each), and budgets
// are cut: `--scale service/content=3` or `node add` grow what a lesson
// needs.
func stage10() Stage {
	var stores, services []NodeSpec
	for _, svc := range Services() {
		stores = append(stores,
			NodeSpec{Prefix: svc + "-db", Roles: []string{"primary"}, Count: 1, Group: svc,
				Flags: append(slices.Clone(replicated), "--nats-max-memory=32MiB")},
			NodeSpec{Prefix: svc + "-db", Roles: []string{"replica"}, Count: 2, Group: svc, First: 2,
				Flags: append(slices.Clone(replicated), "--nats=off")},
		)
		services = append(services, NodeSpec{Prefix: svc, Roles: []string{"service"}, Count: 1, Service: svc, Group: svc})
	}
	nodes := append(stores, services...)
	nodes = append(nodes,
		NodeSpec{Prefix: "cache", Roles: []string{"cache"}, Count: 1, Flags: []string{"--cache-max-bytes=32MiB"}},
		NodeSpec{Prefix: "worker", Roles: []string{"worker"}, Count: 1, Flags: []string{"--cache=on", remoteServices}},
		NodeSpec{Prefix: "app", Roles: []string{"app"}, Count: 2, Flags: append(slices.Clone(queuedApp), remoteServices)},
		NodeSpec{Prefix: "lb", Roles: []string{"lb"}, Count: 1},
		NodeSpec{Prefix: "edge", Roles: []string{"edge"}, Count: 1, Flags: append(slices.Clone(edgeFlags), "--edge-max-bytes=64MiB")},
	)
	return Stage{Number: 10, Title: "microservices", Nodes: nodes, Open: Endpoint{Prefix: "edge", Port: "edge"}}
}

// defaultStage is the stage `node up` starts without --stage: stage 9, the
// monolith at its most scaled, 14 processes. Stage 10 is 26 and wants
// every service built, so it is asked for by name.
const defaultStage = 9

// Stages returns every stage this build can start, in order.
func Stages() []Stage { return stages() }

// LatestStage returns the highest stage built.
func LatestStage() Stage {
	s := stages()
	return s[len(s)-1]
}

// DefaultStage returns the stage `node up` starts without --stage.
func DefaultStage() Stage {
	s, _ := LookupStage(defaultStage)
	return s
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
	return Stage{}, fmt.Errorf("there is no stage %d: stages you can start are %s", n, strings.Join(names, ", "))
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

// ParseScale parses --scale: "role=K[,role=K...]", e.g. "app=3,replica=2",
// where a role that runs in several groups (stage 10's services and store
// groups) is named with its group: "service/content=3", "replica/search=1".
// K is 0 to 64; a role (or role/group) given twice is an error.
func ParseScale(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		key, k, ok := strings.Cut(f, "=")
		key = strings.TrimSpace(key)
		role, group, grouped := strings.Cut(key, "/")
		if !ok || role == "" || grouped && !validGroup(group) {
			return nil, fmt.Errorf("--scale %q: want role=count or role/group=count, e.g. app=3 or service/content=3", f)
		}
		n, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil || n < 0 || n > maxScale {
			return nil, fmt.Errorf("--scale %s: count %q must be a number from 0 to %d", key, k, maxScale)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("--scale: %q given twice", key)
		}
		out[key] = n
	}
	return out, nil
}

// validGroup reports whether g can name a store group or a service: 1 to
// 32 of a-z, 0-9 and '-', as `node run --group` takes.
func validGroup(g string) bool {
	if len(g) == 0 || len(g) > 32 {
		return false
	}
	for _, c := range g {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// ScaleRole returns the role of a --scale key: "service" of
// "service/content", "app" of "app".
func ScaleRole(key string) string {
	role, _, _ := strings.Cut(key, "/")
	return role
}

// maxScale bounds one group: each node is a process of tens of MiB.
const maxScale = 64

// Scale returns the stage with the group of each role resized; more than
// one primary is an error (the caller checks the role names: node run
// knows them). A role the
// stage runs in a group of its own is resized (0 removes the group, unless
// it holds the URL to open); a role the stage does not run gets a new group
// named after it, started last; a role that shares its nodes with other
// roles (stage 1's app,primary) cannot be scaled alone. A role that runs
// in several groups (stage 10's service, primary and replica) is scaled
// one group at a time, named after a slash: "service/content".
func (s Stage) Scale(counts map[string]int) (Stage, error) {
	s = s.clone()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a deterministic order for the new groups
	for _, key := range keys {
		n := counts[key]
		role, group, grouped := strings.Cut(key, "/")
		if grouped {
			if err := s.scaleGroup(role, group, n); err != nil {
				return Stage{}, err
			}
			continue
		}
		if role == "primary" && n > 1 {
			return Stage{}, fmt.Errorf("--scale primary=%d: a stack has one primary; --scale replica=%d adds store nodes that follow it", n, n-1)
		}
		if groups := s.groupsOf(role); len(groups) > 1 {
			what := "group"
			if role == "service" {
				what = "service"
			}
			return Stage{}, fmt.Errorf("--scale %s=%d: %s runs %s nodes in %d groups (%s): name the %s, e.g. --scale %s/%s=%d",
				role, n, s, role, len(groups), strings.Join(groups, ", "), what, role, groups[0], n)
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

// scaleGroup resizes the nodes of role in one store group or service:
// --scale service/content=3, --scale replica/search=1.
func (s *Stage) scaleGroup(role, group string, n int) error {
	key := fmt.Sprintf("--scale %s/%s=%d", role, group, n)
	groups := s.groupsOf(role)
	i := slices.IndexFunc(s.Nodes, func(ns NodeSpec) bool { return ns.runsOnly(role) && ns.inGroup(group) })
	switch {
	case len(groups) == 0:
		return fmt.Errorf("%s: %s runs no %s nodes in groups; role/group names one of stage 10's services or store groups (%s)", key, s, role, strings.Join(Services(), ", "))
	case i < 0:
		return fmt.Errorf("%s: %s runs no %s nodes of %q: it runs them for %s", key, s, role, group, strings.Join(groups, ", "))
	case role == "primary" && n != 1:
		return fmt.Errorf("%s: the %s group has one primary (%s-1); --scale replica/%s=K sets the store nodes that follow it", key, group, s.Nodes[i].Prefix, group)
	case n == 0:
		s.Nodes = slices.Delete(s.Nodes, i, i+1)
	default:
		s.Nodes[i].Count = n
	}
	return nil
}

// groupsOf returns the store groups or services in which the stage runs
// nodes of role (only role), in stage order; nil when it runs them in the
// one group of stages 1 to 9.
func (s Stage) groupsOf(role string) []string {
	var out []string
	for _, ns := range s.Nodes {
		g := cmp.Or(ns.Service, ns.Group)
		if ns.runsOnly(role) && g != "" && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// ownFlagRoles are the roles whose nodes need flags of their own that no
// default can give: a service node runs one named service (--service) over
// its own store group. Only a stage that already runs such a group (stage
// 10) can grow it.
var ownFlagRoles = []string{"service"}

// canAdd says why a node of role cannot be added to the stage (node add,
// --scale), or nil.
func (s Stage) canAdd(role string) error {
	if !slices.Contains(ownFlagRoles, role) {
		return nil
	}
	for _, ns := range s.Nodes {
		if ns.runsOnly(role) {
			return nil
		}
	}
	return fmt.Errorf("a %s node needs flags of its own (--service NAME, its store group) that %s does not give: stage 10 runs services (`up --stage 10`); or run one by hand as docs/api.md, \"Payments service\", shows", role, s)
}

// specFor returns the group a new node of role joins in `node add ROLE`: the
// stage's group that runs exactly that role, or a new group named after it.
func (s Stage) specFor(role string) NodeSpec {
	spec, _ := s.specForAdd(role, "")
	return spec
}

// specForAdd returns the group a new node of role joins in `node add ROLE
// [--group G]`: the stage's group that runs exactly that role, in store
// group or service G when given, or a new group named after the role. A
// role the stage runs in several groups needs G; a role of ownFlagRoles
// the stage does not run cannot be added.
func (s Stage) specForAdd(role, group string) (NodeSpec, error) {
	var match []NodeSpec
	for _, ns := range s.Nodes {
		if ns.runsOnly(role) && (group == "" || ns.inGroup(group)) {
			match = append(match, ns)
		}
	}
	groups := s.groupsOf(role)
	flag := "--group"
	if role == "service" {
		flag = "--service"
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) > 1 && len(groups) > 1:
		return NodeSpec{}, fmt.Errorf("%s runs %s nodes for %s: name one with %s, e.g. `add %s %s %s`", s, role, strings.Join(groups, ", "), flag, role, flag, groups[0])
	case len(match) > 1:
		return match[0], nil
	case group != "" && len(groups) > 0:
		return NodeSpec{}, fmt.Errorf("%s runs no %s nodes for %q: it runs them for %s", s, role, group, strings.Join(groups, ", "))
	case group != "":
		return NodeSpec{}, fmt.Errorf("%s runs no %s nodes in groups: %s names one of stage 10's services or store groups (%s)", s, role, flag, strings.Join(Services(), ", "))
	}
	if err := s.canAdd(role); err != nil {
		return NodeSpec{}, err
	}
	return NodeSpec{Prefix: role, Roles: []string{role}}, nil
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
