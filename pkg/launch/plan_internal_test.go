package launch

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPlanGivesEachNodeItsOwnAddress(t *testing.T) {
	st, _ := LookupStage(2)
	st, _ = st.Scale(map[string]int{"app": 2})
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.2"), logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name+"@"+n.Addr)
	}
	if want := []string{"db-1@127.0.0.2", "app-1@127.0.0.30", "app-2@127.0.0.31"}; !slices.Equal(got, want) {
		t.Errorf("plan = %v, want %v", got, want)
	}
	db := nodes[0]
	if db.Ports["store"] != 7070 || db.Ports["gossip"] != 7946 || db.Ports["admin"] != 9090 || db.Ports["nats"] != 4222 {
		t.Errorf("db-1 ports = %v, want the standard ones", db.Ports)
	}
	if _, ok := db.Ports["app"]; ok {
		t.Errorf("db-1 ports = %v, want no app port on a primary", db.Ports)
	}
	if db.Admin != "127.0.0.2:9090" || db.Log != "/s/logs/db-1.log" || db.Data != "/s/data/db-1" {
		t.Errorf("db-1 admin, log, data = %s, %s, %s", db.Admin, db.Log, db.Data)
	}
	wantArgs := "run --roles app --name app-2 --addr 127.0.0.31 --data /s/data/app-2 " +
		"--join 127.0.0.2:7946,127.0.0.30:7946,127.0.0.31:7946 --log-level info"
	if got := strings.Join(nodes[2].Args, " "); got != wantArgs {
		t.Errorf("app-2 args =\n  %s\nwant\n  %s", got, wantArgs)
	}
}

// TestAddressFollowsTheName checks the address table of common.md: a
// node's address depends on its name alone, whatever the stage or scale.
func TestAddressFollowsTheName(t *testing.T) {
	want := map[string]string{
		"node-1": "127.0.0.2", "db-1": "127.0.0.2",
		"replica-1": "127.0.0.3", "replica-2": "127.0.0.4", "replica-7": "127.0.0.9", "replica-8": "127.0.1.3",
		"cache-1": "127.0.0.10", "cache-2": "127.0.0.11",
		"worker-1": "127.0.0.20", "worker-2": "127.0.0.21",
		"app-1": "127.0.0.30", "app-2": "127.0.0.31", "app-4": "127.0.0.33", "app-20": "127.0.0.49", "app-21": "127.0.1.30", "app-41": "127.0.2.30",
		"lb-1": "127.0.0.50", "lb-2": "127.0.0.51", "edge-1": "127.0.0.60",
	}
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.2"), logLevel: "info"}
	seen := map[string]string{}
	check := func(n Node) {
		t.Helper()
		if w, ok := want[n.Name]; ok && n.Addr != w {
			t.Errorf("%s at %s, want %s", n.Name, n.Addr, w)
		}
		if prev, ok := seen[n.Name]; ok && prev != n.Addr {
			t.Errorf("%s at %s in one stage and %s in another", n.Name, n.Addr, prev)
		}
		seen[n.Name] = n.Addr
	}
	for _, st := range Stages() {
		for _, scale := range []map[string]int{nil, {"app": 41}, {"replica": 8, "cache": 3}} {
			scaled, err := st.Scale(scale)
			if err != nil {
				continue // stage 1 cannot scale app alone
			}
			nodes, err := p.plan(scaled)
			if err != nil {
				t.Fatalf("plan %s scaled %v: %v", st, scale, err)
			}
			addrs := map[string]string{}
			for _, n := range nodes {
				check(n)
				if other, dup := addrs[n.Addr]; dup {
					t.Errorf("%s: %s and %s both at %s", st, other, n.Name, n.Addr)
				}
				addrs[n.Addr] = n.Name
			}
		}
	}
	// Tests run stacks from another base: every address shifts with it.
	shifted := planner{dir: "/s", base: netip.MustParseAddr("127.0.1.2"), logLevel: "info"}
	st, _ := LookupStage(3)
	nodes, _ := shifted.plan(st)
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name+"@"+n.Addr)
	}
	if want := []string{"db-1@127.0.1.2", "app-1@127.0.1.30", "app-2@127.0.1.31", "lb-1@127.0.1.50"}; !slices.Equal(got, want) {
		t.Errorf("stage 3 from 127.0.1.2 = %v, want %v", got, want)
	}
	if _, err := (&planner{dir: "/s", base: netip.MustParseAddr("127.0.0.2")}).next(NodeSpec{Prefix: "bogus", Roles: []string{"bogus"}}, nodes); err == nil {
		t.Error("a node of an unknown prefix was given an address, want an error")
	}
}

func TestPlanSharedAddressGivesDistinctPorts(t *testing.T) {
	st, _ := LookupStage(2)
	st, _ = st.Scale(map[string]int{"app": 9})
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.1"), shared: true, logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, n := range nodes {
		if n.Addr != "127.0.0.1" {
			t.Errorf("%s on %s, want every node on 127.0.0.1", n.Name, n.Addr)
		}
		for k, port := range n.Ports {
			if other, dup := seen[port]; dup {
				t.Errorf("port %d is %s's %s and %s", port, n.Name, k, other)
			}
			seen[port] = n.Name + "'s " + k
			if !slices.Contains(n.Args, "--"+k+"-port") {
				t.Errorf("%s args %v lack --%s-port", n.Name, n.Args, k)
			}
		}
	}
	if got := nodes[0].Ports["gossip"]; got != 7946 {
		t.Errorf("first node's gossip port = %d, want the standard 7946", got)
	}
	more, err := p.next(st.specFor("app"), nodes)
	if err != nil {
		t.Fatal(err)
	}
	if more.Name != "app-10" {
		t.Errorf("next app = %s, want app-10", more.Name)
	}
	for k, port := range more.Ports {
		if other, dup := seen[port]; dup {
			t.Errorf("added node's %s port %d collides with %s", k, port, other)
		}
	}
}

func TestNextNodeTakesTheNextNameAndAddress(t *testing.T) {
	st, _ := LookupStage(2)
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.2"), logLevel: "info"}
	nodes, _ := p.plan(st)
	n, err := p.next(st.specFor("app"), nodes)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "app-2" || n.Addr != "127.0.0.31" || n.Slot != 29 {
		t.Errorf("next app = %s at %s (slot %d), want app-2 at 127.0.0.31 (slot 29)", n.Name, n.Addr, n.Slot)
	}
	if !slices.Contains(n.Args, "127.0.0.2:7946,127.0.0.30:7946,127.0.0.31:7946") {
		t.Errorf("next app args %v, want every node as a seed", n.Args)
	}
	c, _ := p.next(st.specFor("cache"), append(nodes, n))
	if c.Name != "cache-1" || c.Addr != "127.0.0.10" || !slices.Equal(c.Roles, []string{"cache"}) || c.Ports["cache"] != 6379 {
		t.Errorf("a role the stage lacks = %s %v %v, want cache-1 with the cache port", c.Name, c.Roles, c.Ports)
	}
}

func TestAddIPStaysOnLoopback(t *testing.T) {
	if _, err := addIP(netip.MustParseAddr("127.255.255.250"), 10); err == nil {
		t.Error("addIP past 127.255.255.254 succeeded, want an error")
	}
	if a, err := addIP(netip.MustParseAddr("127.0.0.2"), 3); err != nil || a.String() != "127.0.0.5" {
		t.Errorf("addIP(127.0.0.2, 3) = %v, %v; want 127.0.0.5", a, err)
	}
}

// A service node needs --service and a store group of its own, which no
// stage before 10 gives: neither --scale nor node add may plan one bare.
func TestServiceNodesAreNotAddedBare(t *testing.T) {
	st, err := LookupStage(9)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Scale(map[string]int{"service": 1}); err == nil || !strings.Contains(err.Error(), "--service") {
		t.Errorf("--scale service=1 = %v, want a refusal naming --service", err)
	}
	if err := st.canAdd("service"); err == nil {
		t.Error("node add service was allowed on stage 9")
	}
	if err := st.canAdd("app"); err != nil {
		t.Errorf("node add app refused: %v", err)
	}
}

// Stage 10 runs each service as instances over a store group of its own:
// names, addresses, groups and flags follow from the service's name.
func TestPlanStage10(t *testing.T) {
	st, err := LookupStage(10)
	if err != nil {
		t.Fatal(err)
	}
	st, err = st.Scale(map[string]int{"service/content": 3})
	if err != nil {
		t.Fatal(err)
	}
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.2"), logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Node{}
	var names []string
	for _, n := range nodes {
		byName[n.Name] = n
		names = append(names, n.Name)
	}
	want := "users-db-1 users-db-2 users-db-3 content-db-1 content-db-2 content-db-3 search-db-1 search-db-2 search-db-3 " +
		"notifications-db-1 notifications-db-2 notifications-db-3 payments-db-1 payments-db-2 payments-db-3 " +
		"users-1 content-1 content-2 content-3 search-1 notifications-1 payments-1 cache-1 worker-1 app-1 app-2 lb-1 edge-1"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("stage 10 with service/content=3 =\n  %s\nwant (store groups first, then services, then the front)\n  %s", got, want)
	}
	for _, c := range []struct {
		name, addr, roles, group, service string
		flags                             []string
		ports                             []string
	}{
		{"users-db-1", "127.0.0.120", "primary", "users", "", []string{"--group=users", "--store-sync=1", "--store-failover"}, []string{"store", "nats"}},
		{"content-db-1", "127.0.0.130", "primary", "content", "", []string{"--group=content", "--store-failover"}, []string{"store", "nats"}},
		{"content-db-3", "127.0.0.132", "replica", "content", "", []string{"--group=content", "--store-failover", "--nats=off"}, []string{"store"}},
		{"payments-db-2", "127.0.0.161", "replica", "payments", "", []string{"--group=payments", "--nats=off"}, []string{"store"}},
		{"users-1", "127.0.0.70", "service", "users", "users", []string{"--service=users", "--group=users"}, []string{"service"}},
		{"content-3", "127.0.0.82", "service", "content", "content", []string{"--service=content", "--group=content"}, []string{"service"}},
		{"notifications-1", "127.0.0.100", "service", "notifications", "notifications", []string{"--service=notifications"}, []string{"service"}},
		{"payments-1", "127.0.0.110", "service", "payments", "payments", []string{"--service=payments"}, []string{"service"}},
		{"app-2", "127.0.0.31", "app", "", "", []string{"--app-services=remote", "--jobs=queue"}, []string{"app"}},
		{"worker-1", "127.0.0.20", "worker", "", "", []string{"--app-services=remote"}, nil},
		{"edge-1", "127.0.0.60", "edge", "", "", nil, []string{"edge"}},
	} {
		n, ok := byName[c.name]
		if !ok {
			t.Errorf("no %s in stage 10", c.name)
			continue
		}
		if n.Addr != c.addr || strings.Join(n.Roles, ",") != c.roles || n.Group != c.group || n.Service != c.service {
			t.Errorf("%s = %s roles %v group %q service %q, want %s roles %s group %q service %q", c.name, n.Addr, n.Roles, n.Group, n.Service, c.addr, c.roles, c.group, c.service)
		}
		for _, f := range c.flags {
			if !slices.Contains(n.Args, f) {
				t.Errorf("%s args %v lack %s", c.name, n.Args, f)
			}
		}
		for _, k := range c.ports {
			if _, ok := n.Ports[k]; !ok {
				t.Errorf("%s ports %v lack %s", c.name, n.Ports, k)
			}
		}
	}
	if got := byName["content-db-2"].Ports["nats"]; got != 0 {
		t.Errorf("content-db-2 has a NATS port %d, want NATS only on each group's first store node", got)
	}
	if got := byName["content-2"].Ports["service"]; got != 7080 {
		t.Errorf("content-2 service port = %d, want the standard 7080", got)
	}
	addrs := map[string]string{}
	for _, n := range nodes {
		if other, dup := addrs[n.Addr]; dup {
			t.Errorf("%s and %s both at %s", other, n.Name, n.Addr)
		}
		addrs[n.Addr] = n.Name
	}

	// node add: another instance of a named service, another replica of a
	// named group; the role alone is ambiguous.
	spec, err := st.specForAdd("service", "search")
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.next(spec, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "search-2" || n.Addr != "127.0.0.91" || !slices.Contains(n.Args, "--service=search") {
		t.Errorf("add service --service search = %s at %s %v, want search-2 at 127.0.0.91 serving search", n.Name, n.Addr, n.Args)
	}
	spec, err = st.specForAdd("replica", "content")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := p.next(spec, nodes); n.Name != "content-db-4" || n.Addr != "127.0.0.133" || !slices.Contains(n.Args, "--group=content") {
		t.Errorf("add replica --group content = %s at %s %v, want content-db-4 at 127.0.0.133 in group content", n.Name, n.Addr, n.Args)
	}
	for _, c := range []struct{ role, group, want string }{
		{"service", "", "name one with --service"},
		{"replica", "", "name one with --group"},
		{"service", "billing", `no service nodes for "billing"`},
	} {
		if _, err := st.specForAdd(c.role, c.group); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("specForAdd(%s, %q) = %v, want an error containing %q", c.role, c.group, err, c.want)
		}
	}
	if spec, err := st.specForAdd("app", ""); err != nil || spec.Prefix != "app" {
		t.Errorf("specForAdd(app) = %+v, %v, want the app group", spec, err)
	}
}

// On a machine without 127.0.0.2 every node of stage 10 shares 127.0.0.1,
// and no two of its 26 nodes share a port.
func TestPlanStage10SharedAddress(t *testing.T) {
	st, _ := LookupStage(10)
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.1"), shared: true, logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, n := range nodes {
		for k, port := range n.Ports {
			if other, dup := seen[port]; dup {
				t.Errorf("port %d is %s's %s and %s", port, n.Name, k, other)
			}
			seen[port] = n.Name + "'s " + k
		}
	}
	if c := nodes[slices.IndexFunc(nodes, func(n Node) bool { return n.Name == "content-1" })]; !slices.Contains(c.Args, "--service-port") {
		t.Errorf("content-1 args %v lack --service-port", c.Args)
	}
}
