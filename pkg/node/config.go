package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// Role names, as given to --roles.
const (
	RoleLB      = "lb"
	RoleApp     = "app"
	RolePrimary = "primary"
	RoleReplica = "replica"
	RoleCache   = "cache"
	RoleEdge    = "edge"
	RoleWorker  = "worker"
	// RoleService serves one stage-10 service (--service) over its own
	// store group (servicerole.go).
	RoleService = "service"
)

// Roles lists every role a node can take, in the order they are started.
var Roles = []string{RolePrimary, RoleReplica, RoleCache, RoleWorker, RoleService, RoleApp, RoleLB, RoleEdge}

// builtRoles are the roles this build can run; the others are planned in
// DESIGN.md and refused with a message saying so.
var builtRoles = map[string]bool{RolePrimary: true, RoleReplica: true, RoleApp: true, RoleLB: true, RoleCache: true, RoleEdge: true, RoleWorker: true, RoleService: true}

// Ports are the listening ports of a node's roles. Each role has its own
// default so that several nodes can share a machine on different loopback
// addresses with the same ports (DESIGN.md, "Ports"). Zero picks a free port.
type Ports struct {
	Edge, LB, App, Service, Store, Cache, NATS, NATSCluster, Gossip, Admin int
}

// DefaultPorts returns the standard ports of DESIGN.md.
func DefaultPorts() Ports {
	return Ports{Edge: 8000, LB: 8080, App: 8081, Service: 7080, Store: 7070, Cache: 6379,
		NATS: 4222, NATSCluster: 6222, Gossip: 7946, Admin: 9090}
}

// Config is everything `node run` is told. Role-specific settings live in
// the role packages' own Config types, held in Roles below.
type Config struct {
	// Name identifies the node in the cluster; unique. Default: the host
	// name, or "node-<addr>" when that is not available.
	Name string
	// RoleNames are the roles this node runs (see Roles). Required.
	RoleNames []string
	// Addr is the IP address every listener binds and that other nodes use.
	// Default 127.0.0.1. A non-loopback address needs ClusterKey: Validate
	// refuses it without one.
	Addr string
	// Join are gossip seeds, host:port. Empty means this node starts a new
	// cluster (others join it).
	Join []string
	// DataDir holds the store file, NATS's JetStream directory and the
	// outbox. Default ./data/<name>.
	DataDir string
	// ClusterKey is the cluster's one secret, base64 (`./node keygen`): it
	// encrypts gossip, and every internal credential is derived from it
	// (cluster.DeriveSecrets: store token, cache and NATS passwords, purge
	// and admin tokens; docs/security.md). Default empty: gossip in clear
	// and every internal port open, which only loopback allows. Give it
	// through the environment (NODE_CLUSTER_KEY) or ClusterKeyFile rather
	// than the command line, where every user of the machine can read it.
	ClusterKey string
	// ClusterKeyFile, when set, is a file holding ClusterKey
	// (--cluster-key-file, NODE_CLUSTER_KEY_FILE); Validate reads it.
	ClusterKeyFile string
	// TLS names the PEM files (--tls-cert, --tls-key, --tls-ca) that turn
	// on TLS for internal traffic: the store port (API, replication, lease
	// messages), the cache port and NATS (clients and routes); the node's
	// clients then verify each peer against the CA. Default none: internal
	// traffic is plain TCP, authenticated by the key's secrets but readable
	// by whoever can watch the network. All three files or none.
	TLS cluster.TLSFiles
	// Service is the stage-10 service a node with RoleService serves
	// (--service): users, content, search, notifications or payments (the
	// table of services.go). Its store group is --group, by default the
	// service's name.
	Service string
	// ServiceDrain is how long a service node, on Close, stays serving
	// after it has announced draining, so that every caller's instance
	// list (membership, by gossip) drops it before its port closes; the
	// calls in flight then finish. Default 2s: gossip reaches every node
	// of a local cluster in well under a second. Shorter risks calls sent
	// to a closed port (retried elsewhere when safe, failed otherwise);
	// longer slows a rolling deploy. The node waits the longer of this and
	// DrainTimeout.
	ServiceDrain time.Duration
	// NATS says whether this node embeds a NATS server: auto (when it holds
	// a store role), on, off.
	NATS NATSMode
	// Ports of each role.
	Ports Ports
	// Admin configures the admin endpoints (admin.go).
	Admin AdminConfig
	// CommandLine is the command line /debug/pprof/cmdline shows, with the
	// value of every secret flag replaced (RedactArgs). Default os.Args.
	CommandLine []string
	// DrainTimeout is how long Close waits after announcing "draining"
	// before it stops the serving roles, so that load balancers polling
	// membership and health checks stop sending first. Default 1s.
	DrainTimeout time.Duration
	// Logger receives every log line; node and role attributes are added.
	Logger *slog.Logger

	// RoleConfig holds each role package's configuration.
	RoleConfig RoleConfigs
}

// DefaultConfig returns the configuration of a single node on 127.0.0.1.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1",
		NATS:         NATSAuto,
		Ports:        DefaultPorts(),
		Admin:        DefaultAdminConfig(),
		DrainTimeout: time.Second,
		ServiceDrain: 2 * time.Second,
		RoleConfig:   defaultRoleConfigs(),
	}
}

// Has reports whether the node runs role r.
func (c *Config) Has(r string) bool { return slices.Contains(c.RoleNames, r) }

// hasStore reports whether the node holds a store role.
func (c *Config) hasStore() bool { return c.Has(RolePrimary) || c.Has(RoleReplica) }

// runsNATS reports whether the node embeds a NATS server.
func (c *Config) runsNATS() bool {
	return c.NATS == NATSOn || (c.NATS == NATSAuto && c.hasStore())
}

// ErrConfig marks errors in the configuration: the command exits with status
// 2 and prints the message, which says what to change.
var ErrConfig = errors.New("configuration error")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// Validate checks the configuration and fills defaults that depend on other
// fields (name, data directory). Every error wraps ErrConfig and names the
// flag to change.
func (c *Config) Validate() error {
	if len(c.RoleNames) == 0 {
		return configErr("no roles given: use --roles, e.g. --roles app,primary (roles: %s)", strings.Join(Roles, ", "))
	}
	if c.Has(RolePrimary) && c.Has(RoleReplica) {
		return configErr("--roles has both primary and replica: a node is one or the other")
	}
	seen := map[string]bool{}
	for _, r := range c.RoleNames {
		if !slices.Contains(Roles, r) {
			return configErr("unknown role %q in --roles: roles are %s", r, strings.Join(Roles, ", "))
		}
		if !builtRoles[r] {
			return configErr("role %q is designed but not built yet in this version: roles you can run are %s", r, strings.Join(BuiltRoles(), ", "))
		}
		if seen[r] {
			return configErr("role %q given twice in --roles", r)
		}
		seen[r] = true
	}
	ip := net.ParseIP(c.Addr)
	if ip == nil {
		return flagErr("addr", "%q is not an IP address: give the address this node binds, e.g. --addr 127.0.0.2 or --addr 10.0.0.5", c.Addr)
	}
	if ip.IsUnspecified() {
		return flagErr("addr", "%s is the wildcard address: give the one address other nodes can reach this node at", c.Addr)
	}
	key, err := ClusterKey(c.ClusterKey, c.ClusterKeyFile)
	if err != nil {
		return err
	}
	c.ClusterKey = key
	if err := c.validateSecurity(ip); err != nil {
		return err
	}
	switch c.NATS {
	case NATSAuto, NATSOn, NATSOff:
	default:
		return flagErr("nats", "%q: want auto, on or off", c.NATS)
	}
	for _, p := range c.allPorts() {
		if p.port < 0 || p.port > 65535 {
			return flagErr(p.flag, "%d is not a port (0-65535)", p.port)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return flagErr("join", "%q: want host:port, e.g. --join 127.0.0.2:7946", j)
		}
	}
	if c.Name == "" {
		c.Name = defaultName(c.Addr)
	}
	if strings.ContainsAny(c.Name, " /\\\t\n") {
		return flagErr("name", "%q: use letters, digits, '-', '_' or '.'", c.Name)
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join("data", c.Name)
	}
	if c.RoleConfig.Store.Group != "" && !c.hasStore() && !c.Has(RoleService) {
		// The flag would do nothing here: say so rather than ignore it.
		return flagErr("group", "%q is the store group of a store node or a service node: use it with --roles primary, replica or service", c.RoleConfig.Store.Group)
	}
	if err := c.validateService(); err != nil {
		return err
	}
	if c.DrainTimeout < 0 {
		return flagErr("drain-timeout", "%v is negative", c.DrainTimeout)
	}
	if err := c.validateAdmin(); err != nil {
		return err
	}
	if c.CommandLine == nil {
		c.CommandLine = os.Args
	}
	return c.RoleConfig.validate(c)
}

// validateAdmin fills the admin address from --addr and --admin-port when
// --admin-addr is not given, and refuses an admin port off loopback without
// a cluster key: its endpoints would be open to the network.
func (c *Config) validateAdmin() error {
	if c.Admin.Addr == "" {
		c.Admin.Addr = net.JoinHostPort(c.Addr, strconv.Itoa(c.Ports.Admin))
	}
	host, port, err := net.SplitHostPort(c.Admin.Addr)
	ip := net.ParseIP(host)
	p, perr := strconv.Atoi(port)
	if err != nil || ip == nil || perr != nil || p < 0 || p > 65535 {
		return flagErr("admin-addr", "%q: want IP:port, e.g. --admin-addr 127.0.0.1:9090", c.Admin.Addr)
	}
	c.Ports.Admin = p
	// On the node's own address, joining the cluster refuses a
	// non-loopback address without a key (after the address is found to be
	// this machine's), before the admin port opens.
	if !ip.IsLoopback() && c.ClusterKey == "" && !c.adminOnAddr() {
		return flagErr("admin-addr", "%s is not a loopback address: /status, /metrics and /debug/pprof there need the admin token derived from a cluster key; give the node one (--cluster-key-file FILE or NODE_CLUSTER_KEY) or keep the admin port on loopback", c.Admin.Addr)
	}
	return c.Admin.validate()
}

// validateSecurity checks the key and the TLS files, and refuses to open
// internal listeners off loopback without a key: gossip, the admin port
// and, with their roles, the store, cache and NATS ports would take
// anyone's requests there.
func (c *Config) validateSecurity(ip net.IP) error {
	if _, err := cluster.ParseKey(c.ClusterKey); err != nil {
		return flagErr("cluster-key", "%v (make one with `./node keygen`)", err)
	}
	if _, err := cluster.LoadTLS(c.TLS); err != nil {
		return configErr("%v", err)
	}
	if c.ClusterKey == "" && !ip.IsLoopback() {
		return flagErr("addr", "%s is not a loopback address and no cluster key is set: this node's internal ports (%s) would be open to the network. Make a key with `./node keygen` and give every node the same one (--cluster-key-file FILE or NODE_CLUSTER_KEY)",
			c.Addr, strings.Join(c.internalPorts(), ", "))
	}
	return nil
}

// internalPorts names the internal listeners this node opens: those that
// take only the cluster's own nodes (and its operators), as opposed to the
// public edge, lb and app ports.
func (c *Config) internalPorts() []string {
	ps := []string{"gossip", "admin"}
	if c.hasStore() {
		ps = append(ps, "store")
	}
	if c.Has(RoleCache) {
		ps = append(ps, "cache")
	}
	if c.runsNATS() {
		ps = append(ps, "NATS")
	}
	if c.Has(RoleService) {
		ps = append(ps, "service")
	}
	return ps
}

// BuiltRoles lists the roles this build can run.
func BuiltRoles() []string {
	var out []string
	for _, r := range Roles {
		if builtRoles[r] {
			out = append(out, r)
		}
	}
	return out
}

type portFlag struct {
	role, flag string
	port       int
}

// allPorts returns every port flag, used or not by this node's roles.
func (c *Config) allPorts() []portFlag {
	return []portFlag{
		{"edge", "edge-port", c.Ports.Edge}, {"lb", "lb-port", c.Ports.LB}, {"app", "app-port", c.Ports.App}, {"service", "service-port", c.Ports.Service},
		{"store", "store-port", c.Ports.Store}, {"cache", "cache-port", c.Ports.Cache}, {"nats", "nats-port", c.Ports.NATS},
		{"nats-cluster", "nats-cluster-port", c.Ports.NATSCluster}, {"gossip", "gossip-port", c.Ports.Gossip}, {"admin", "admin-port", c.Ports.Admin},
	}
}

// portList returns the ports this node will listen on at Addr, with the
// flag that sets each, for the in-use check and for membership metadata.
// The admin port is among them when it is on Addr (see adminOnAddr).
func (c *Config) portList() []portFlag {
	ps := []portFlag{{"gossip", "gossip-port", c.Ports.Gossip}}
	if c.adminOnAddr() {
		ps = append(ps, portFlag{"admin", "admin-port", c.Ports.Admin})
	}
	if c.hasStore() {
		ps = append(ps, portFlag{"store", "store-port", c.Ports.Store})
	}
	if c.runsNATS() {
		ps = append(ps, portFlag{"nats", "nats-port", c.Ports.NATS}, portFlag{"nats-cluster", "nats-cluster-port", c.Ports.NATSCluster})
	}
	if c.Has(RoleService) {
		ps = append(ps, portFlag{"service", "service-port", c.Ports.Service})
	}
	if c.Has(RoleApp) {
		ps = append(ps, portFlag{"app", "app-port", c.Ports.App})
	}
	if c.Has(RoleLB) {
		ps = append(ps, portFlag{"lb", "lb-port", c.Ports.LB})
	}
	if c.Has(RoleCache) {
		ps = append(ps, portFlag{"cache", "cache-port", c.Ports.Cache})
	}
	if c.Has(RoleEdge) {
		ps = append(ps, portFlag{"edge", "edge-port", c.Ports.Edge})
	}
	return ps
}

// checkDataDir makes sure the data directory exists and is writable.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return configErr("data directory %s cannot be created (%v): choose another with --data", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return configErr("data directory %s is not writable (%v): fix its permissions or choose another with --data", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// adminOnAddr reports whether the admin endpoints listen on the node's
// address (the default) rather than one --admin-addr gives.
func (c *Config) adminOnAddr() bool {
	host, _, err := net.SplitHostPort(c.Admin.Addr)
	return c.Admin.Addr == "" || (err == nil && net.ParseIP(host).Equal(net.ParseIP(c.Addr)))
}

// checkPorts binds every port the node needs once, so that a port in use is
// reported before anything starts, naming the flag that moves it. On
// 0-ports there is nothing to check.
func checkPorts(c *Config) error {
	if !c.adminOnAddr() && c.Ports.Admin != 0 {
		l, err := net.Listen("tcp", c.Admin.Addr)
		if err != nil {
			return configErr("--admin-addr %s cannot be bound (%v): stop the process holding it or choose another", c.Admin.Addr, err)
		}
		l.Close()
	}
	for _, p := range c.portList() {
		if p.port == 0 {
			continue
		}
		addr := net.JoinHostPort(c.Addr, fmt.Sprint(p.port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if isAddrNotAvail(err) {
				return configErr("address %s is not on this machine (%v): give one of its own addresses with --addr", c.Addr, err)
			}
			return configErr("port %d (%s) on %s is in use: stop the process holding it or choose another with --%s", p.port, p.role, c.Addr, p.flag)
		}
		l.Close()
	}
	return nil
}

func defaultName(addr string) string {
	if h, err := os.Hostname(); err == nil && h != "" && addr == "127.0.0.1" {
		return h
	}
	return "node-" + strings.NewReplacer(".", "-", ":", "-").Replace(addr)
}
