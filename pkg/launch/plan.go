package launch

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// portDef is one listening port of `node run`: its membership key, the
// flag that sets it, and its standard value.
type portDef struct {
	key, flag string
	port      int
}

// standardPorts are the default ports of `node run` (DESIGN.md, "Ports"),
// the contract every node of a stack shares.
var standardPorts = [...]portDef{
	{"edge", "edge-port", 8000},
	{"lb", "lb-port", 8080},
	{"app", "app-port", 8081},
	{"service", "service-port", 7080},
	{"store", "store-port", 7070},
	{"cache", "cache-port", 6379},
	{"nats", "nats-port", 4222},
	{"nats-cluster", "nats-cluster-port", 6222},
	{"gossip", "gossip-port", 7946},
	{"admin", "admin-port", 9090},
}

// portsOf returns the port keys a node with roles listens on.
func portsOf(roles []string) []string {
	keys := []string{"gossip", "admin"}
	for _, r := range roles {
		switch r {
		case "primary", "replica":
			keys = append(keys, "store", "nats", "nats-cluster")
		case "app", "lb", "cache", "edge", "service":
			keys = append(keys, r)
		}
	}
	return keys
}

// addrBlock is the block of addresses of one name prefix: node N of the
// prefix is at offset First+N-1 from the base address, for N up to Size;
// the next Size nodes take the same last octets in the next /24, and so on.
type addrBlock struct {
	Prefix      string
	First, Size int
}

// addrBlocks is the one address table of a stack: each node name has one
// address whatever the stage or --scale, so that app-1 is 127.0.0.30 in
// every stage and a learner's bookmarks keep working (issue 17). Offsets
// are from the base address, 127.0.0.2 by default:
//
//	node-1, db-1  .2        (stage 1's one node and the configured primary)
//	replica-N     .3 – .9
//	cache-N       .10 – .19
//	worker-N      .20 – .29
//	app-N         .30 – .49
//	lb-N          .50 – .59
//	edge-N        .60 – .69
//
// and stage 10's services, ten addresses for each service's instances and
// ten for its store group:
//
//	users-N .70 – .79, content-N .80 – .89, search-N .90 – .99,
//	notifications-N .100 – .109, payments-N .110 – .119
//	users-db-N .120 – .129, content-db-N .130 – .139, search-db-N .140 – .149,
//	notifications-db-N .150 – .159, payments-db-N .160 – .169
//
// node and db share offset 0: no stage runs both.
var addrBlocks = [...]addrBlock{
	{"node", 0, 1},
	{"db", 0, 1},
	{"replica", 1, 7},
	{"cache", 8, 10},
	{"worker", 18, 10},
	{"app", 28, 20},
	{"lb", 48, 10},
	{"edge", 58, 10},
	{"users", 68, 10},
	{"content", 78, 10},
	{"search", 88, 10},
	{"notifications", 98, 10},
	{"payments", 108, 10},
	{"users-db", 118, 10},
	{"content-db", 128, 10},
	{"search-db", 138, 10},
	{"notifications-db", 148, 10},
	{"payments-db", 158, 10},
}

// addrOffset returns the offset from the base address of node num of
// prefix, from addrBlocks.
func addrOffset(prefix string, num int) (int, error) {
	for _, b := range addrBlocks {
		if b.Prefix == prefix {
			return ((num-1)/b.Size)*256 + b.First + (num-1)%b.Size, nil
		}
	}
	var known []string
	for _, b := range addrBlocks {
		known = append(known, b.Prefix)
	}
	return 0, fmt.Errorf("no address for %s-%d: node up places nodes named %s", prefix, num, strings.Join(known, ", "))
}

// sharedPortStep spaces the ports of nodes sharing one address: the node
// at address offset k uses standard+k*step, moved up past any port already
// taken, so that its ports, like its address, follow from its name.
const sharedPortStep = 10

// planner assigns names, addresses, ports and arguments to new nodes.
type planner struct {
	dir      string // absolute launcher directory
	base     netip.Addr
	shared   bool // one address for every node, distinct ports
	logLevel string
}

// plan expands a stage into its nodes: names prefix-1.., each at its
// address of addrBlocks from base (or distinct ports on base when shared),
// and the `node run` arguments that start each. Every node is given every
// node's gossip address as --join: whichever is up, a node (re)starting
// finds the cluster, and a node ignores its own address.
func (p *planner) plan(st Stage) ([]Node, error) {
	var nodes []Node
	for _, spec := range st.Nodes {
		for i := spec.first(); i < spec.first()+spec.Count; i++ {
			n, err := p.node(spec, i, nodes)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, n)
		}
	}
	seeds := gossipAddrs(nodes)
	for i := range nodes {
		nodes[i].Args = p.args(nodes[i], st.specOf(nodes[i].Name), seeds)
	}
	return nodes, nil
}

// next plans one more node of spec after the existing ones: the next free
// number of its prefix, and that name's address (or ports).
func (p *planner) next(spec NodeSpec, existing []Node) (Node, error) {
	num := 1
	for _, n := range existing {
		if rest, ok := strings.CutPrefix(n.Name, spec.Prefix+"-"); ok {
			if k, err := strconv.Atoi(rest); err == nil && k >= num {
				num = k + 1
			}
		}
	}
	n, err := p.node(spec, num, existing)
	if err != nil {
		return Node{}, err
	}
	n.Args = p.args(n, spec, gossipAddrs(append(slices.Clone(existing), n)))
	return n, nil
}

// node assigns the name, address and ports of node num of spec.
func (p *planner) node(spec NodeSpec, num int, others []Node) (Node, error) {
	name := fmt.Sprintf("%s-%d", spec.Prefix, num)
	slot, err := addrOffset(spec.Prefix, num)
	if err != nil {
		return Node{}, err
	}
	n := Node{
		Name:    name,
		Roles:   slices.Clone(spec.Roles),
		Ports:   map[string]int{},
		Log:     filepath.Join(p.dir, "logs", name+".log"),
		Data:    filepath.Join(p.dir, "data", name),
		Slot:    slot,
		Group:   cmp.Or(spec.Group, spec.Service),
		Service: spec.Service,
	}
	addr := p.base
	if !p.shared {
		a, err := addIP(p.base, slot)
		if err != nil {
			return Node{}, fmt.Errorf("%s: %w", name, err)
		}
		addr = a
		for _, o := range others {
			if o.Addr == addr.String() {
				return Node{}, fmt.Errorf("%s and %s would share the address %s: node up runs no stage with both", o.Name, name, addr)
			}
		}
	}
	n.Addr = addr.String()
	if p.shared {
		taken := map[int]bool{}
		for _, o := range others {
			for _, port := range o.Ports {
				taken[port] = true
			}
		}
		for _, d := range standardPorts {
			port := d.port + slot*sharedPortStep
			for taken[port] {
				port++
			}
			taken[port] = true
			n.Ports[d.key] = port
		}
	} else {
		for _, d := range standardPorts {
			n.Ports[d.key] = d.port
		}
	}
	// Keep only the ports the node listens on, so that cluster.json shows
	// what is real.
	used := portsOf(n.Roles)
	if flagValue(spec.RunFlags(), "nats") == "off" {
		used = slices.DeleteFunc(used, func(k string) bool { return k == "nats" || k == "nats-cluster" })
	}
	for k := range n.Ports {
		if !slices.Contains(used, k) {
			delete(n.Ports, k)
		}
	}
	n.Admin = net.JoinHostPort(n.Addr, strconv.Itoa(n.Ports["admin"]))
	return n, nil
}

// args are the `node run` arguments of n. In shared mode the flag of each
// port the node uses is given (each node has its own ports); otherwise the
// standard ports are the defaults and only the address differs.
func (p *planner) args(n Node, spec NodeSpec, seeds []string) []string {
	a := []string{"run",
		"--roles", strings.Join(n.Roles, ","),
		"--name", n.Name,
		"--addr", n.Addr,
		"--data", n.Data,
		"--join", strings.Join(seeds, ","),
		"--log-level", p.logLevel,
	}
	if p.shared {
		for _, d := range standardPorts {
			if port, ok := n.Ports[d.key]; ok {
				a = append(a, "--"+d.flag, strconv.Itoa(port))
			}
		}
	}
	return append(a, spec.RunFlags()...)
}

// flagValue returns the value flags give --name (the last one), "" when
// they do not give it; flags are in the --name=value form of NodeSpec.
func flagValue(flags []string, name string) string {
	v := ""
	for _, f := range flags {
		if k, val, ok := strings.Cut(strings.TrimLeft(f, "-"), "="); ok && k == name {
			v = val
		}
	}
	return v
}

// specOf returns the group a planned node belongs to, by its name: of the
// groups of its prefix, the last that starts at or before its number
// (content-db-1 is the primary's, content-db-2 the replicas').
func (s Stage) specOf(name string) NodeSpec {
	var out NodeSpec
	for _, ns := range s.Nodes {
		if rest, ok := strings.CutPrefix(name, ns.Prefix+"-"); ok {
			if num, err := strconv.Atoi(rest); err == nil && num >= ns.first() {
				out = ns
			}
		}
	}
	return out
}

func gossipAddrs(nodes []Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, net.JoinHostPort(n.Addr, strconv.Itoa(n.Ports["gossip"])))
	}
	return out
}

// addIP returns base+k, which must stay in 127.0.0.0/8 and not be the
// broadcast-like 127.255.255.255.
func addIP(base netip.Addr, k int) (netip.Addr, error) {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(k)
	out := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	if !out.IsLoopback() || v&0xffffff == 0xffffff {
		return netip.Addr{}, fmt.Errorf("no loopback address %d past %s: give a lower --base-addr", k, base)
	}
	return out, nil
}
