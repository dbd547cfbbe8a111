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
	p := planner{dir: "/s", base: netip.MustParseAddr("127.0.0.254"), logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name+"@"+n.Addr)
	}
	// Addresses carry over the last octet.
	if want := []string{"db-1@127.0.0.254", "app-1@127.0.0.255", "app-2@127.0.1.0"}; !slices.Equal(got, want) {
		t.Errorf("plan = %v, want %v", got, want)
	}
	db := nodes[0]
	if db.Ports["store"] != 7070 || db.Ports["gossip"] != 7946 || db.Ports["admin"] != 9090 || db.Ports["nats"] != 4222 {
		t.Errorf("db-1 ports = %v, want the standard ones", db.Ports)
	}
	if _, ok := db.Ports["app"]; ok {
		t.Errorf("db-1 ports = %v, want no app port on a primary", db.Ports)
	}
	if db.Admin != "127.0.0.254:9090" || db.Log != "/s/logs/db-1.log" || db.Data != "/s/data/db-1" {
		t.Errorf("db-1 admin, log, data = %s, %s, %s", db.Admin, db.Log, db.Data)
	}
	wantArgs := "run --roles app --name app-2 --addr 127.0.1.0 --data /s/data/app-2 " +
		"--join 127.0.0.254:7946,127.0.0.255:7946,127.0.1.0:7946 --log-level info"
	if got := strings.Join(nodes[2].Args, " "); got != wantArgs {
		t.Errorf("app-2 args =\n  %s\nwant\n  %s", got, wantArgs)
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
	if n.Name != "app-2" || n.Addr != "127.0.0.4" || n.Slot != 2 {
		t.Errorf("next app = %s at %s (slot %d), want app-2 at 127.0.0.4 (slot 2)", n.Name, n.Addr, n.Slot)
	}
	if !slices.Contains(n.Args, "127.0.0.2:7946,127.0.0.3:7946,127.0.0.4:7946") {
		t.Errorf("next app args %v, want every node as a seed", n.Args)
	}
	c, _ := p.next(st.specFor("cache"), append(nodes, n))
	if c.Name != "cache-1" || !slices.Equal(c.Roles, []string{"cache"}) || c.Ports["cache"] != 6379 {
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
