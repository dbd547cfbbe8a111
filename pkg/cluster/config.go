package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/settings"
)

// DefaultPort is the gossip port (TCP and UDP) a node binds when none is
// given, and the port assumed for a seed written without one.
const DefaultPort = 7946

// Config configures one node's membership. DefaultConfig returns values tuned
// for a LAN or a single machine; the failure-detection fields are derived from
// memberlist's DefaultLANConfig and differ from it where noted.
type Config struct {
	// Name identifies this node in the cluster and must be unique. A node that
	// restarts under the same name replaces its former self. Required.
	Name string

	// BindAddr is the IP address the gossip listeners (TCP and UDP) bind.
	// Default "127.0.0.1". Any address outside 127.0.0.0/8 and ::1 requires
	// SecretKey (see ErrKeyRequired), because gossip carries the address of
	// every role and must not be readable or forgeable on a shared network.
	BindAddr string

	// BindPort is the gossip port, used for both TCP and UDP. Default 7946;
	// 0 picks a free port (read it back with Addr), which tests use.
	BindPort int

	// AdvertiseAddr is the IP address other nodes use to reach this one.
	// Empty means BindAddr, or, when BindAddr is 0.0.0.0, the first private
	// address of the machine. Set it behind NAT or in containers.
	AdvertiseAddr string

	// AdvertisePort is the port other nodes use to reach this one. 0 means
	// the bound port.
	AdvertisePort int

	// Seeds are the gossip addresses ("host:port", or "host" for port 7946)
	// contacted on Open and by the re-join loop. Any one reachable seed is
	// enough to join; none reachable is not an error, the node starts alone
	// and keeps trying. The node's own address is ignored, so every node of a
	// cluster can be given the same list.
	Seeds []string

	// SecretKey encrypts and authenticates all gossip with AES-GCM. 16, 24 or
	// 32 bytes select AES-128, -192 or -256; see ParseKey and GenerateKey.
	// Nil disables encryption, which is allowed only on loopback. Every node
	// of a cluster must use the same key: a node with another key cannot
	// join and is not seen.
	SecretKey []byte

	// Meta is the metadata this node announces: roles, role addresses, store
	// group, service and state. Meta.Name is ignored (Name is used). The
	// encoded form must fit in 512 bytes (ErrMetaTooLarge). Change it after
	// Open with SetMeta or SetState.
	Meta Meta

	// ProbeInterval is the time between two failure-detection probes: every
	// interval, each node pings one other member (in a shuffled round-robin
	// order). It is the unit of every detection delay, see FailureDetection.
	// Default 500ms (memberlist LAN: 1s): halving it halves detection time
	// for twice the probe traffic, which on a LAN of a few dozen nodes is a
	// few packets per second per node.
	ProbeInterval time.Duration

	// ProbeTimeout is how long a direct ping waits for its ack before the
	// prober asks IndirectChecks other nodes to ping the target for it. It
	// should be the 99th percentile of round-trip time. Default 200ms
	// (memberlist LAN: 500ms; a LAN answers in well under a millisecond, and
	// a slow ack is not a failure anyway, only a reason to ask others). Must
	// be less than ProbeInterval, which bounds the whole probe including the
	// indirect pings and the TCP fallback.
	ProbeTimeout time.Duration

	// SuspicionMult sets how long a node that failed a probe stays suspect,
	// which is its time to refute the suspicion, before it is declared dead:
	//
	//	SuspicionTimeout = SuspicionMult * max(1, log10(N)) * ProbeInterval
	//
	// for a cluster of N nodes. Default 4 (as memberlist LAN), so 2s at the
	// default ProbeInterval for up to 10 nodes. Lower detects sooner but
	// gives a briefly stalled node (GC pause, overloaded machine) less time
	// to refute before it is wrongly declared dead.
	SuspicionMult int

	// SuspicionMaxTimeoutMult bounds the suspicion timer when other nodes do
	// not confirm the suspicion. In clusters of at least SuspicionMult nodes,
	// memberlist starts the timer at SuspicionMaxTimeoutMult *
	// SuspicionTimeout and shortens it to SuspicionTimeout as
	// SuspicionMult-2 other nodes independently confirm the failure; in
	// smaller clusters it uses SuspicionTimeout directly. Default 4
	// (memberlist: 6), so a node whose peers cannot confirm still declares a
	// dead node within about 8s instead of 12s.
	SuspicionMaxTimeoutMult int

	// GossipInterval is the time between gossip rounds, in which a node
	// sends queued updates (joins, deaths, metadata) to 3 random members.
	// Default 100ms (memberlist LAN: 200ms): news reaches a 10-node cluster
	// in a few hundred milliseconds. Lower spreads faster for more packets.
	GossipInterval time.Duration

	// PushPullInterval is the time between full state exchanges with one
	// random member over TCP, which repairs anything gossip missed and merges
	// clusters that were split. Default 2s (memberlist LAN: 30s). Gossip can
	// miss a metadata update, typically a node's "up" sent while another node
	// was still joining, and until the next exchange that node acts on a stale
	// view (an app that does not see the cache node skips its invalidation).
	// Our clusters are tens of nodes, so a full exchange (a few KB) every 2s
	// is cheap. The dead members a
	// node keeps gossiping to, so that they can refute, are kept as long.
	PushPullInterval time.Duration

	// TCPTimeout bounds connecting to a node and each read or write of a
	// state exchange: a seed that does not answer costs this much per join
	// attempt. Default 2s (memberlist LAN: 10s, sized for large states).
	TCPTimeout time.Duration

	// RejoinInterval is how often the node checks whether it sees fewer alive
	// members than it has seen at most (members that left gracefully are not
	// counted) or is alone, and if so joins again every seed that it does not
	// currently see alive. Memberlist alone never contacts a node it has
	// declared dead for good, so without this, two halves of a cluster that
	// lost each other, or a node whose peers all restarted, stay apart. It
	// also bounds how long a node started before its seeds stays alone.
	// Default 1s; each attempt costs one TCP connection per such seed (a
	// seed that is down for good is tried at this pace, at debug level).
	RejoinInterval time.Duration

	// LeaveTimeout bounds how long Close waits for the leave (and the final
	// metadata update before it) to be gossiped. Default 2s; peers that miss
	// the leave declare the node dead by failure detection instead.
	LeaveTimeout time.Duration

	// DeadNodeReclaimTime is how long a member must have been dead before
	// another address may take its name (a node restarted on another IP or
	// port). Until then, an alive message for the name from a new address is
	// refused as a conflict, which protects against two live nodes sharing a
	// name. A member that left gracefully may be reclaimed at once. Default
	// 10s; 0 never allows it.
	DeadNodeReclaimTime time.Duration

	// ForgetAfter is how long a dead or left member stays in Members (with
	// its status) before it is forgotten. Default 1m.
	ForgetAfter time.Duration

	// Logger receives membership changes at info level and memberlist's own
	// log at debug level. Nil discards.
	Logger *slog.Logger

	// Registerer, if not nil, receives the cluster metrics on Open (and loses
	// them on Close). Nil does not register.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config tuned for a LAN or one machine: a killed
// node is declared dead in about 3s in clusters of up to 10 nodes (see
// FailureDetection). Name must still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:                "127.0.0.1",
		BindPort:                DefaultPort,
		Meta:                    Meta{State: StateUp},
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            200 * time.Millisecond,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 4,
		GossipInterval:          100 * time.Millisecond,
		PushPullInterval:        2 * time.Second,
		TCPTimeout:              2 * time.Second,
		RejoinInterval:          time.Second,
		LeaveTimeout:            2 * time.Second,
		DeadNodeReclaimTime:     10 * time.Second,
		ForgetAfter:             time.Minute,
	}
}

// Sentinel errors, tested with errors.Is.
var (
	// ErrKeyRequired: the node would gossip on a non-loopback address
	// without SecretKey.
	ErrKeyRequired = errors.New("cluster key required")
	// ErrBadKey: a cluster key that is not base64 of 16, 24 or 32 bytes.
	ErrBadKey = errors.New("bad cluster key")
	// ErrMetaTooLarge: the encoded metadata is over memberlist's 512 bytes.
	ErrMetaTooLarge = errors.New("metadata too large")
	// ErrClosed: the cluster has been closed (or was never opened).
	ErrClosed = errors.New("cluster closed")
)

// Validate checks the Config and names the first field that is wrong.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster: Name is required")
	}
	bind := net.ParseIP(c.BindAddr)
	if bind == nil {
		return fmt.Errorf("cluster: BindAddr %q is not an IP address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("cluster: BindPort %d is out of range 0-65535", c.BindPort)
	}
	var adv net.IP
	if c.AdvertiseAddr != "" {
		if adv = net.ParseIP(c.AdvertiseAddr); adv == nil {
			return fmt.Errorf("cluster: AdvertiseAddr %q is not an IP address", c.AdvertiseAddr)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("cluster: AdvertisePort %d is out of range 0-65535", c.AdvertisePort)
	}
	for _, s := range c.Seeds {
		if _, err := normalizeSeed(s); err != nil {
			return fmt.Errorf("cluster: Seeds: %w", err)
		}
	}
	switch len(c.SecretKey) {
	case 0:
		for _, ip := range []net.IP{bind, adv} {
			if ip != nil && !ip.IsLoopback() {
				return fmt.Errorf("cluster: gossip on %s needs SecretKey: run `./node keygen` and give every node the key in NODE_CLUSTER_KEY (--cluster-key): %w", ip, ErrKeyRequired)
			}
		}
	case 16, 24, 32:
	default:
		return fmt.Errorf("cluster: SecretKey is %d bytes, want 16, 24 or 32: %w", len(c.SecretKey), ErrBadKey)
	}
	if c.ProbeInterval <= 0 {
		return settings.Errorf("cluster", "ProbeInterval", "%v must be positive", c.ProbeInterval)
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout >= c.ProbeInterval {
		return settings.Errorf("cluster", "ProbeTimeout", "%v must be positive and less than ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 {
		return settings.Errorf("cluster", "SuspicionMult", "%d must be at least 1", c.SuspicionMult)
	}
	if c.SuspicionMaxTimeoutMult < 1 {
		return fmt.Errorf("cluster: SuspicionMaxTimeoutMult %d must be at least 1", c.SuspicionMaxTimeoutMult)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"GossipInterval", c.GossipInterval},
		{"PushPullInterval", c.PushPullInterval},
		{"TCPTimeout", c.TCPTimeout},
		{"RejoinInterval", c.RejoinInterval},
		{"LeaveTimeout", c.LeaveTimeout},
		{"ForgetAfter", c.ForgetAfter},
	} {
		if d.v <= 0 {
			return settings.Errorf("cluster", d.name, "%v must be positive", d.v)
		}
	}
	if c.DeadNodeReclaimTime < 0 {
		return fmt.Errorf("cluster: DeadNodeReclaimTime %v must not be negative", c.DeadNodeReclaimTime)
	}
	if err := c.Meta.validate(); err != nil {
		return fmt.Errorf("cluster: Meta: %w", err)
	}
	if _, err := encodeMeta(c.Meta, false); err != nil {
		return fmt.Errorf("cluster: Meta: %w", err)
	}
	return nil
}

// Settings returns the failure-detection and re-join settings, bound to
// c's fields. The node owns the address, the seeds (--join) and the key
// (--cluster-key).
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("gossip")
	return []settings.Setting{
		s("gossip-probe-interval", "ProbeInterval", "time between failure-detection probes; detection time scales with it (duration)", settings.Duration(&c.ProbeInterval)),
		s("gossip-probe-timeout", "ProbeTimeout", "wait for a direct ping's ack before asking other nodes to ping, below the probe interval (duration)", settings.Duration(&c.ProbeTimeout)),
		s("gossip-suspicion-mult", "SuspicionMult", "probe intervals, times log10 of the cluster's size, a suspect node has to refute before it is declared dead (count)", settings.Int(&c.SuspicionMult)),
		s("gossip-interval", "GossipInterval", "time between gossip rounds that spread joins, deaths and metadata (duration)", settings.Duration(&c.GossipInterval)),
		s("gossip-rejoin-interval", "RejoinInterval", "how often to re-join the seeds while fewer members are alive than were seen (duration)", settings.Duration(&c.RejoinInterval)),
	}
}

// FailureDetection returns how long, in a cluster of n nodes, the others take
// to declare a node dead after it stops answering (killed, frozen or cut
// off), computed from the Config the way memberlist does it:
//
//	until probed     ~ ProbeInterval: every alive node probes one member per
//	                   interval in shuffled order, so with n-1 probers one
//	                   reaches the silent node in about one interval
//	                   (one prober alone needs up to (n-1) intervals)
//	failed probe     = ProbeInterval: the probe waits ProbeTimeout for a
//	                   direct ack, then for indirect acks and the TCP
//	                   fallback until the interval's end
//	suspicion        = SuspicionMult * max(1, log10(n)) * ProbeInterval,
//	                   or up to SuspicionMaxTimeoutMult times that when
//	                   n >= SuspicionMult and other nodes do not confirm
//	spread the death ~ GossipInterval
//
// typical assumes the usual case (one prober reaches the node within one
// interval, and where confirmations are expected they arrive); worst assumes
// a single prober at the end of its round and no confirmation. Both grow
// when a node's health awareness stretches its probe interval (up to 8x on a
// node that misses its own deadlines, e.g. a starved CPU).
func (c *Config) FailureDetection(n int) (typical, worst time.Duration) {
	if n < 2 {
		n = 2
	}
	suspicion := suspicionTimeout(c.SuspicionMult, n, c.ProbeInterval)
	maxSuspicion := suspicion
	// memberlist expects k = SuspicionMult-2 confirmations, and none when
	// there are not that many other nodes (n minus the prober and the target).
	if k := c.SuspicionMult - 2; k > 0 && n-2 >= k {
		maxSuspicion = time.Duration(c.SuspicionMaxTimeoutMult) * suspicion
	}
	typical = c.ProbeInterval + c.ProbeInterval + suspicion + c.GossipInterval
	worst = time.Duration(n-1)*c.ProbeInterval + c.ProbeInterval + maxSuspicion + c.GossipInterval
	return typical, worst
}

// suspicionTimeout is memberlist's formula (util.go, suspicionTimeout).
func suspicionTimeout(mult, n int, interval time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(mult) * time.Duration(scale*1000) * interval / 1000
}

// normalizeSeed returns a seed as host:port, adding DefaultPort when the
// port is missing.
func normalizeSeed(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty seed address")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host or IP (IPv6 without brackets included).
		if ip := net.ParseIP(s); ip != nil || !strings.Contains(s, ":") {
			return net.JoinHostPort(s, strconv.Itoa(DefaultPort)), nil
		}
		return "", fmt.Errorf("seed %q: %w", s, err)
	}
	if host == "" {
		return "", fmt.Errorf("seed %q has no host", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("seed %q has a bad port", s)
	}
	return s, nil
}
