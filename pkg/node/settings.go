package node

import (
	"fmt"
	"strings"

	"github.com/scalestack/scalestack/pkg/settings"
)

// EnvPrefix starts the environment variable of every setting of `node
// run`: --lb-retries is NODE_LB_RETRIES.
const EnvPrefix = "NODE"

// The groups of `node run -h` and docs/flags.md, in the order they are
// listed: the node's own settings, the levers the stages turn, then each
// role from the front of the stack to the back, then what every node runs.
var settingGroups = []settings.Group{
	{Role: "node", Title: "Node (every node)", Doc: "What every node is told, whatever its roles: its roles, name, address, seeds, data, key and TLS files. These flags have no prefix."},
	{Role: settings.LeversGroup, Title: "The levers", Doc: "The switches the stages of docs/stages.md turn, short and without a prefix: " +
		"`--sticky` (stage 3), `--reads` (stage 4), `--cache` (stage 5), `--sessions` (stage 7), `--jobs` (stage 8). " +
		"`--group` (stage 10) puts a store node in a store group of its own, and names a service node's group; `--service` (stage 10) names the service a `--roles service` node serves."},
	{Role: RoleEdge, Title: "Edge (--roles edge)", Doc: "The CDN edge (docs/edge.md). Flags start with `edge-`."},
	{Role: RoleLB, Title: "Load balancer (--roles lb)", Doc: "The load balancer in front of the app nodes (docs/lb.md). Flags start with `lb-`."},
	{Role: RoleService, Title: "Service (--roles service)", Doc: "A stage-10 service over its own store group (docs/services.md, docs/api.md). Flags start with `service-`."},
	{Role: RoleApp, Title: "App (--roles app)", Doc: "The blog (docs/api.md, docs/cache-tier.md). Flags start with `app-`."},
	{Role: RoleWorker, Title: "Worker (--roles worker)", Doc: "The job consumers of stage 8 (docs/queue.md). Flags start with `worker-`."},
	{Role: RoleCache, Title: "Cache (--roles cache)", Doc: "The cache node, Redis protocol (docs/cache.md). Flags start with `cache-`."},
	{Role: "store", Title: "Store (--roles primary or replica)", Doc: "The store and its replication (docs/store.md, docs/replication.md). Flags start with `store-`."},
	{Role: "nats", Title: "NATS (embedded with a store role, or --nats on)", Doc: "The embedded NATS server with JetStream (docs/queue.md). Flags start with `nats-`."},
	{Role: "gossip", Title: "Gossip (every node)", Doc: "Membership and failure detection (docs/cluster.md). Flags start with `gossip-`."},
	{Role: "admin", Title: "Admin port (every node)", Doc: "/healthz, /readyz, /status, /metrics and /debug/pprof (docs/security.md). Flags start with `admin-`."},
}

// Settings returns the table of every setting of `node run`, bound to c's
// fields, with c's current values as defaults: the node's own, then each
// role package's (their Settings methods), with the port of each role in
// its group. cmd/node registers it on its flag set, prints its help and
// renders docs/flags.md from it; Validate explains the roles' errors with
// it.
func (c *Config) Settings() *settings.Table {
	t := settings.New(EnvPrefix, settingGroups...)
	node := settings.Of("node")
	port := func(role, name, usage string, p *int) settings.Setting {
		return settings.Setting{Name: name, Role: role, Usage: usage + " (0-65535; 0 picks a free one)", Value: settings.Int(p)}
	}
	t.Add(
		node("roles", "RoleNames", "comma-separated roles this node runs: "+strings.Join(Roles, ", "), settings.List(&c.RoleNames)),
		node("name", "Name", "node name, unique in the cluster", settings.String(&c.Name)).ShowDefault("the host name on 127.0.0.1, else node-ADDR"),
		node("addr", "Addr", "IP address every listener binds and other nodes reach this one at; off loopback it needs a cluster key", settings.String(&c.Addr)),
		node("join", "Join", "gossip seeds host:port[,host:port...], nodes already in the cluster; empty starts a new cluster", settings.List(&c.Join)),
		node("data", "DataDir", "data directory: the store file, JetStream and the e-mail outbox", settings.String(&c.DataDir)).ShowDefault("data/NAME"),
		node("cluster-key", "ClusterKey", "base64 cluster key (make one with `./node keygen`): encrypts gossip and derives every internal credential; required off loopback. Prefer NODE_CLUSTER_KEY or --cluster-key-file: the command line is visible to every user", settings.String(&c.ClusterKey)),
		node("cluster-key-file", "ClusterKeyFile", "file holding the cluster key, instead of --cluster-key", settings.String(&c.ClusterKeyFile)),
		node("tls-cert", "TLS.Cert", "PEM certificate of this node for internal TLS (store, cache, NATS); with --tls-key and --tls-ca", settings.String(&c.TLS.Cert)),
		node("tls-key", "TLS.Key", "PEM private key of --tls-cert", settings.String(&c.TLS.Key)),
		node("tls-ca", "TLS.CA", "PEM certificate of the CA that signed every node's certificate; peers are verified against it", settings.String(&c.TLS.CA)),
		node("drain-timeout", "DrainTimeout", "on shutdown, time between announcing draining and closing the listeners, so that load balancers stop sending first (duration)", settings.Duration(&c.DrainTimeout)),
	)
	rc := &c.RoleConfig
	t.Add(port(RoleEdge, "edge-port", "edge (CDN) HTTP port", &c.Ports.Edge))
	t.Add(rc.Edge.Settings()...)
	t.Add(port(RoleLB, "lb-port", "load balancer HTTP port", &c.Ports.LB))
	t.Add(rc.LB.Settings()...)
	t.Add(port(RoleService, "service-port", "service API port (the services' wire, docs/services.md)", &c.Ports.Service))
	t.Add(settings.Of(RoleService)("service-drain", "", "on shutdown, time a service node keeps serving after announcing draining, so that its callers stop picking it before its port closes; in-flight calls then finish (duration; the longer of this and --drain-timeout)", settings.Duration(&c.ServiceDrain)))
	t.Add(port(RoleApp, "app-port", "blog HTTP port", &c.Ports.App))
	t.Add(rc.App.Settings()...)
	t.Add(rc.Worker.Settings()...)
	t.Add(port(RoleCache, "cache-port", "cache (Redis protocol) port", &c.Ports.Cache))
	t.Add(rc.Cache.Settings()...)
	t.Add(port("store", "store-port", "store HTTP port: API, replication, lease", &c.Ports.Store))
	t.Add(rc.Store.Settings()...)
	// After the store's --group, so that the levers list in stage order.
	t.Add(settings.Of(RoleService)("service", "Service", "the stage-10 lever, the service a --roles service node serves: "+strings.Join(serviceNames(), ", ")+"; its store group is --group, by default the service's name", settings.String(&c.Service)).AsLever())
	t.Add(settings.Of("nats")("nats", "NATS", "embed a NATS server: auto (when the node has a store role), on or off", &c.NATS))
	t.Add(port("nats", "nats-port", "NATS client port", &c.Ports.NATS))
	t.Add(port("nats", "nats-cluster-port", "NATS cluster (route) port", &c.Ports.NATSCluster))
	t.Add(rc.NATS.Settings()...)
	t.Add(port("gossip", "gossip-port", "membership gossip port, TCP and UDP", &c.Ports.Gossip))
	t.Add(rc.Cluster.Settings()...)
	t.Add(port("admin", "admin-port", "admin port: /healthz /readyz /status /metrics /debug/pprof", &c.Ports.Admin))
	t.Add(settings.Of("admin")("admin-addr", "Addr", "admin address IP:port, instead of --addr and --admin-port; off loopback it needs a cluster key, and all but /healthz and /readyz then want its token", settings.String(&c.Admin.Addr)))
	return t
}

// NATSMode says whether a node embeds a NATS server (Config.NATS, --nats).
type NATSMode string

// NATS modes of --nats.
const (
	NATSAuto NATSMode = "auto" // embed a NATS server when the node has a store role
	NATSOn   NATSMode = "on"
	NATSOff  NATSMode = "off"
)

// String returns the mode as written.
func (m NATSMode) String() string { return string(m) }

// Set takes auto, on or off (flag.Value).
func (m *NATSMode) Set(s string) error {
	v, err := settings.OneOf(s, NATSAuto, NATSOn, NATSOff)
	if err == nil {
		*m = v
	}
	return err
}

// flagErr is a configuration error about one node setting, naming its flag
// and environment variable: "--addr (NODE_ADDR): ...".
func flagErr(name, format string, args ...any) error {
	return configErr("--%s (%s): %s", name, settings.EnvName(EnvPrefix, name), fmt.Sprintf(format, args...))
}

// roleErr is a configuration error from a role's Validate, said in terms of
// the flag that sets the field when the table has one.
func (c *Config) roleErr(role string, err error) error {
	return configErr("%v", c.Settings().Explain(role, err))
}
