package natsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/scalestack/scalestack/pkg/queue"
)

// ErrClosed is returned by Open and SetPeers on a Server after Close.
var ErrClosed = errors.New("queue: closed")

// ErrStandalone is returned by SetPeers on a Standalone server given peers
// other than itself: it cannot join them.
var ErrStandalone = errors.New("queue: standalone server cannot join peers")

// Server is an embedded nats-server with JetStream, clustered with the
// other NATS-hosting nodes.
type Server struct {
	cfg  ServerConfig
	log  *slog.Logger
	nlog *natsLogger

	ready chan struct{} // closed when Open has succeeded

	mu      sync.Mutex
	ns      *server.Server
	opts    *server.Options // what ns runs with; the base of every reload
	self    *url.URL        // this server's own cluster URL
	seeds   []*url.URL      // cfg.Routes, kept for the server's life
	peers   []*url.URL      // every peer SetPeers was ever given
	opening chan struct{}   // non-nil while Open starts the server; closed when it is done
	closed  bool
}

// NewServer checks cfg and returns a server that Open starts.
func NewServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seeds := make([]*url.URL, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		u, _ := parseRoute(r) // checked by Validate
		seeds = append(seeds, u)
	}
	log := discardLogger(cfg.Logger)
	return &Server{
		cfg:   cfg,
		log:   log,
		nlog:  newNATSLogger(log.With("component", "nats")),
		ready: make(chan struct{}),
		seeds: seeds,
	}, nil
}

// Open starts the server and waits, up to StartTimeout, until it accepts
// connections. It fails with a clear error when a port is taken.
func (s *Server) Open() error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.ns != nil || s.opening != nil:
		s.mu.Unlock()
		return errors.New("queue: server already open")
	}
	opts, err := s.options()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	// Starting takes a while; Status and SetPeers must not wait for it.
	opening := make(chan struct{})
	s.opening = opening
	s.mu.Unlock()
	defer close(opening)

	ns, err := s.start(opts)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.opening = nil
	if err != nil {
		return err
	}
	if s.closed {
		// Close ran while the server was starting.
		ns.Shutdown()
		ns.WaitForShutdown()
		return ErrClosed
	}
	s.ns, s.opts = ns, opts
	close(s.ready)
	s.log.Info("nats server started", "client_url", ns.ClientURL(), "cluster_url", s.clusterURL(),
		"routes", urlStrings(opts.Routes), "standalone", s.cfg.Standalone,
		"store_dir", s.cfg.DataDir, "sync_always", s.cfg.SyncAlways)
	// Peers that SetPeers brought while the server was starting.
	if !s.cfg.Standalone {
		return s.reloadRoutes()
	}
	return nil
}

// options checks the ports and builds the nats-server options. s.mu must
// be held.
func (s *Server) options() (*server.Options, error) {
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("queue: create data dir: %w", err)
	}
	// nats-server reports a taken port only through its logger, after it
	// has started half its goroutines. Trying the ports first gives the
	// caller an error it can test with errors.Is(err, syscall.EADDRINUSE).
	clientPort := s.cfg.ClientPort
	if clientPort != 0 {
		if err := portFree(s.cfg.Host, clientPort); err != nil {
			return nil, fmt.Errorf("queue: client port: %w", err)
		}
	} else {
		clientPort = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: s.cfg.Name,
		Host:       s.cfg.Host,
		Port:       clientPort,
		// The node owns the process's signals and its shutdown order.
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               s.cfg.DataDir,
		SyncAlways:             s.cfg.SyncAlways,
		JetStreamMaxMemory:     s.cfg.MaxMemory,
		JetStreamMaxStore:      s.cfg.MaxStore,
		DisableJetStreamBanner: true,
		Debug:                  debugEnabled(s.log),
		Trace:                  s.cfg.Trace,
	}
	if pw := s.cfg.Password; pw != "" {
		opts.Username, opts.Password = queue.AuthUser, pw
	}
	if s.cfg.TLS != nil {
		opts.TLSConfig = s.cfg.TLS.Clone()
	}
	if s.cfg.Standalone {
		return opts, nil
	}
	clusterPort := s.cfg.ClusterPort
	if clusterPort != 0 {
		if err := portFree(s.cfg.Host, clusterPort); err != nil {
			return nil, fmt.Errorf("queue: cluster port: %w", err)
		}
	} else {
		// The server's own cluster URL goes into its routes before it
		// starts, so a random cluster port has to be known now. Another
		// process could take it in between; Open then fails and says so.
		p, err := freePort(s.cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("queue: pick cluster port: %w", err)
		}
		clusterPort = p
	}
	opts.Cluster = server.ClusterOpts{
		Name: s.cfg.ClusterName,
		Host: s.cfg.Host,
		Port: clusterPort,
	}
	if pw := s.cfg.Password; pw != "" {
		// Routes to this server must present the password; routes it
		// learns from peers (implicit) present these credentials too.
		opts.Cluster.Username, opts.Cluster.Password = queue.AuthUser, pw
	}
	if s.cfg.RouteTLS != nil {
		opts.Cluster.TLSConfig = s.cfg.RouteTLS.Clone()
	}
	selfHost := s.cfg.Host
	if ip := net.ParseIP(selfHost); ip != nil && ip.IsUnspecified() {
		// A wildcard listener reaches itself on loopback; peers learn
		// its addresses from nats-server, which lists the interfaces.
		selfHost = "127.0.0.1"
	} else {
		// Without an advertised address, nats-server gossips a peer's
		// route URL with the source IP of its connection, which on a
		// machine with several addresses (127.0.0.x here) is not the one
		// it listens on, and the mesh never completes.
		opts.Cluster.Advertise = net.JoinHostPort(s.cfg.Host, strconv.Itoa(clusterPort))
	}
	s.self = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(selfHost, strconv.Itoa(clusterPort))}
	opts.Routes = s.routes()
	return opts, nil
}

// start runs a nats-server with opts until it accepts connections with
// JetStream enabled, or shuts it down again and says why not.
func (s *Server) start(opts *server.Options) (*server.Server, error) {
	ns, err := server.NewServer(opts.Clone())
	if err != nil {
		return nil, fmt.Errorf("queue: new nats server: %w", err)
	}
	ns.SetLoggerV2(s.nlog, opts.Debug, opts.Trace, false)

	// Start returns once the listeners and JetStream are set up (or have
	// failed, which it only logs).
	ns.Start()
	err = s.waitReady(ns)
	if err == nil && !ns.JetStreamEnabled() {
		err = errors.New("queue: start jetstream: not enabled")
		if f := s.nlog.lastFatal(); f != "" {
			err = fmt.Errorf("queue: start jetstream: %s", f)
		}
	}
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	return ns, nil
}

// waitReady polls for readiness in short steps, so a fatal start error is
// reported at once instead of after the whole StartTimeout.
func (s *Server) waitReady(ns *server.Server) error {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	for {
		if f := s.nlog.lastFatal(); f != "" {
			return fmt.Errorf("queue: start nats server: %s", f)
		}
		if ns.ReadyForConnections(100 * time.Millisecond) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("queue: start nats server: not ready after %v", s.cfg.StartTimeout)
		}
	}
}

// Close shuts the server down and waits until it has stopped. A graceful
// shutdown hands the leadership of the streams this server leads to
// another replica in well under a second; clients reconnect to the other
// servers. Close is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	ns, opening := s.ns, s.opening
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if opening != nil {
		// Open shuts the server down when it sees closed; wait for that.
		<-opening
		return nil
	}
	if already || ns == nil {
		return nil
	}
	s.log.Info("nats server stopping")
	ns.Shutdown()
	ns.WaitForShutdown()
	s.log.Info("nats server stopped")
	return nil
}

// Ready reports whether the server accepts connections.
func (s *Server) Ready() bool {
	select {
	case <-s.ready:
	default:
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed
}

// ReadyCh is closed once Open has succeeded.
func (s *Server) ReadyCh() <-chan struct{} { return s.ready }

// ClientURL is the URL clients connect to (nats://host:port), or "" before
// Open.
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// ClusterURL is the URL peers route to (nats-route://host:port), or ""
// before Open and on a Standalone server. This is what membership should
// carry for the server.
func (s *Server) ClusterURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return ""
	}
	return s.clusterURL()
}

// clusterURL is the own cluster URL, or "" when standalone.
func (s *Server) clusterURL() string {
	if s.self == nil {
		return ""
	}
	return s.self.String()
}

// SetPeers tells the server the cluster URLs of all NATS-hosting members,
// with or without its own. The node calls it whenever membership changes,
// also before Open, which then starts with them as routes. Routes to newly
// seen peers are added at run time (a config reload of the
// running server).
//
// Routes are never removed: a peer that leaves the list keeps its route,
// and nats-server keeps redialling it (quietly, about once a second), so
// that it is back in the cluster as soon as it returns. Dropping it would
// be worse: nats-server closes a removed route for good, and when this
// server had dialled all its routes itself, a membership hiccup that
// briefly listed no peers would cut it off from the cluster until the peers
// came back to the list. The cost is a dial per second per departed
// address until the process restarts.
//
// Route gossip already connects a server to every peer of a peer it
// reaches, so one shared peer is enough for a cluster to form; SetPeers
// makes the mesh independent of which server happened to start first.
func (s *Server) SetPeers(clusterURLs []string) error {
	peers := make([]*url.URL, 0, len(clusterURLs))
	for _, c := range clusterURLs {
		u, err := parseRoute(c)
		if err != nil {
			return fmt.Errorf("queue: set peers: %w", err)
		}
		peers = append(peers, u)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.cfg.Standalone {
		// The node may list its own configured cluster address among the
		// NATS-hosting members; only others are an error.
		own := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.ClusterPort))
		for _, p := range peers {
			if p.Host != own {
				return ErrStandalone
			}
		}
		return nil
	}
	old := s.peers
	for _, p := range peers {
		if !slices.ContainsFunc(s.peers, func(o *url.URL) bool { return o.Host == p.Host }) {
			s.peers = append(s.peers, p)
		}
	}
	if s.ns == nil {
		// Before Open, or while it starts: Open routes to them.
		return nil
	}
	if err := s.reloadRoutes(); err != nil {
		s.peers = old
		return fmt.Errorf("queue: set peers: %w", err)
	}
	return nil
}

// reloadRoutes makes the running server route to s.routes(), if that
// differs from what it has. s.mu must be held.
func (s *Server) reloadRoutes() error {
	routes := s.routes()
	if sameURLs(routes, s.opts.Routes) {
		return nil
	}
	next := s.opts.Clone()
	next.Routes = routes
	// ReloadOptions takes ownership of what it is given; keep our own copy.
	if err := s.ns.ReloadOptions(next.Clone()); err != nil {
		return fmt.Errorf("reload routes: %w", err)
	}
	s.opts = next
	s.log.Info("nats routes changed", "routes", urlStrings(routes))
	return nil
}

// routes is self, then the seeds, then the peers, without duplicates. The
// self route makes a lone server start (see ServerConfig.Routes).
//
// The list is sorted as nats-server sorts it: its ReloadOptions sorts the
// running options' routes in place to compare them with the new ones
// (diffOptions, imposeOrder), while its route goroutines read that slice,
// a data race the race detector reports. A slice that is already in its
// order is compared without a single write.
// s.mu must be held.
func (s *Server) routes() []*url.URL {
	out := []*url.URL{s.withAuth(s.self)}
	for _, list := range [][]*url.URL{s.seeds, s.peers} {
		for _, u := range list {
			if !slices.ContainsFunc(out, func(o *url.URL) bool { return o.Host == u.Host }) {
				out = append(out, s.withAuth(u))
			}
		}
	}
	slices.SortFunc(out, func(a, b *url.URL) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// withAuth returns a copy of the route URL u carrying the cluster's
// credentials, or u itself when the cluster has no password.
func (s *Server) withAuth(u *url.URL) *url.URL {
	if s.cfg.Password == "" {
		return u
	}
	c := *u
	c.User = url.UserPassword(queue.AuthUser, s.cfg.Password)
	return &c
}

// ClusterSize is the number of servers in the NATS cluster as this server
// sees it: itself and every server it has a route to. Use it with Replicas.
func (s *Server) ClusterSize() int {
	s.mu.Lock()
	ns := s.ns
	s.mu.Unlock()
	if ns == nil {
		return 0
	}
	return 1 + len(routedPeers(ns))
}

// MetaLeader is the name of the JetStream meta leader, or "" while there is
// none (at start, and for a few seconds after the leader dies). Streams
// cannot be created or changed without one.
func (s *Server) MetaLeader() string {
	s.mu.Lock()
	ns := s.ns
	s.mu.Unlock()
	if ns == nil {
		return ""
	}
	jsz, err := ns.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// ServerStatus is the live state of a Server, for the node's /status.
type ServerStatus struct {
	Name        string `json:"name"`
	Ready       bool   `json:"ready"`
	Standalone  bool   `json:"standalone"`
	ClientURL   string `json:"client_url,omitempty"`
	ClusterURL  string `json:"cluster_url,omitempty"`
	ClusterName string `json:"cluster_name"`
	// ClusterSize counts this server and the servers it has routes to.
	ClusterSize int `json:"cluster_size"`
	// Peers are the names of the servers this one has routes to.
	Peers []string `json:"peers"`
	// ConfiguredRoutes are the route URLs the server dials (self, seeds
	// and the last SetPeers).
	ConfiguredRoutes []string `json:"configured_routes"`
	// MetaLeader is the JetStream meta leader; "" while none is elected.
	MetaLeader string `json:"meta_leader"`
	// MetaClusterSize is the number of JetStream peers the meta group knows,
	// including ones that are down.
	MetaClusterSize int    `json:"meta_cluster_size"`
	SyncAlways      bool   `json:"sync_always"`
	Streams         int    `json:"streams"`
	Consumers       int    `json:"consumers"`
	Messages        uint64 `json:"messages"`
	Bytes           uint64 `json:"bytes"`
	MemoryBytes     uint64 `json:"memory_bytes"`
	StoreBytes      uint64 `json:"store_bytes"`
}

// Status returns a ServerStatus.
func (s *Server) Status() any { return s.status() }

func (s *Server) status() ServerStatus {
	st := ServerStatus{Name: s.cfg.Name, Standalone: s.cfg.Standalone, ClusterName: s.cfg.ClusterName,
		Peers: []string{}, ConfiguredRoutes: []string{}}
	s.mu.Lock()
	ns, opts, closed := s.ns, s.opts, s.closed
	if opts != nil {
		st.ConfiguredRoutes = urlStrings(opts.Routes)
		st.ClusterURL = s.clusterURL()
	}
	s.mu.Unlock()
	if ns == nil || closed {
		return st
	}
	st.Ready = true
	st.ClientURL = ns.ClientURL()
	st.Peers = routedPeers(ns)
	st.ClusterSize = 1 + len(st.Peers)
	if jsz, err := ns.Jsz(&server.JSzOptions{}); err == nil {
		st.SyncAlways = jsz.Config.SyncAlways
		st.Streams = jsz.Streams
		st.Consumers = jsz.Consumers
		st.Messages = jsz.Messages
		st.Bytes = jsz.Bytes
		st.MemoryBytes = jsz.Memory
		st.StoreBytes = jsz.Store
		if jsz.Meta != nil {
			st.MetaLeader = jsz.Meta.Leader
			st.MetaClusterSize = jsz.Meta.Size
		}
	}
	return st
}

// routedPeers returns the sorted names of the servers ns has a route to.
// nats-server keeps a pool of several connections per peer; each peer is
// named once.
func routedPeers(ns *server.Server) []string {
	rz, err := ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return []string{}
	}
	names := make([]string, 0, len(rz.Routes))
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

func sameURLs(a, b []*url.URL) bool {
	return slices.EqualFunc(a, b, func(x, y *url.URL) bool { return x.String() == y.String() })
}

// urlStrings returns the URLs as text for logs and status, with any
// password replaced by "xxxxx".
func urlStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Redacted()
	}
	return out
}

// portFree reports whether host:port can be bound now.
func portFree(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}

// freePort returns a port on host that was free a moment ago.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
