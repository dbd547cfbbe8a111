package lb

import (
	"sync"
)

// Target is one backend as Discovery reports it.
type Target struct {
	// Name identifies the backend (the app node's name). Empty means Addr.
	Name string
	// Addr is the backend's HTTP address, host:port.
	Addr string
	// Weight is the backend's share under PolicyWeighted. 0 means 1.
	Weight int
	// Draining means the node is shutting down: it gets no new requests,
	// and those in flight finish.
	Draining bool
	// HealthAddr, when set, is where active checks go instead of Addr
	// (host:port): a node may answer Config.HealthPath on its admin port
	// rather than on the port it serves requests on.
	HealthAddr string
}

// Discovery yields the current backends. The balancer polls it every
// Config.DiscoveryInterval; the node implements it over membership (the app
// nodes that are up or draining). Backends must be safe for concurrent use
// and must not block for long.
type Discovery interface {
	Backends() []Target
}

// StaticDiscovery is a fixed list of backends that tests and --lb-backends use.
// Set may replace the list at any time, as membership would.
type StaticDiscovery struct {
	mu      sync.Mutex
	targets []Target
}

// NewStaticDiscovery returns a StaticDiscovery of addrs, each named by its
// address, weight 1.
func NewStaticDiscovery(addrs ...string) *StaticDiscovery {
	d := &StaticDiscovery{}
	for _, a := range addrs {
		d.targets = append(d.targets, Target{Name: a, Addr: a, Weight: 1})
	}
	return d
}

// Backends returns a copy of the current list.
func (d *StaticDiscovery) Backends() []Target {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Target(nil), d.targets...)
}

// Set replaces the list.
func (d *StaticDiscovery) Set(targets ...Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.targets = append([]Target(nil), targets...)
}
