package node

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/cluster"
)

// Service instances from membership, for the rpc clients of the services
// (stage 10): the members whose Meta.Service names the service, at their
// "service" address, that take new work (state up: not starting, not
// draining, not left). A service node announces draining before it stops
// (Close, ServiceDrain), so its callers drop it while it still answers.

// serviceDirectory holds the instances of every service, rebuilt from
// membership on each of its events, so that the clients' Instances, called
// on every call, only read a map.
type serviceDirectory struct {
	mu        sync.RWMutex
	byService map[string][]rpc.Instance
}

// rebuild lists every service's instances from members, by name, so that
// the clients' round robin walks them in a stable order.
func (d *serviceDirectory) rebuild(members []cluster.Member) {
	by := map[string][]rpc.Instance{}
	for _, m := range members {
		if m.Service == "" || !m.Up() {
			continue
		}
		if a := m.RoleAddr(RoleService); a != "" {
			by[m.Service] = append(by[m.Service], rpc.Instance{Name: m.Name, Addr: a})
		}
	}
	for _, list := range by {
		slices.SortFunc(list, func(a, b rpc.Instance) int { return strings.Compare(a.Name, b.Name) })
	}
	d.mu.Lock()
	d.byService = by
	d.mu.Unlock()
}

// instances returns the instances of service; the slice is not changed
// afterwards (a rebuild makes new ones).
func (d *serviceDirectory) instances(service string) []rpc.Instance {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.byService[service]
}

// watchMembership keeps the lists read on every call in step with
// membership until ctx is done: the service directory and the store nodes
// (storeLists). The subscription's first events are every alive member,
// so the lists are complete before the roles open.
func (n *Node) watchMembership(ctx context.Context) {
	rebuild := func() {
		members := n.cluster.Members()
		n.services.rebuild(members)
		n.stores.Store(storeListsOf(members))
	}
	rebuild()
	n.onMembership(ctx, rebuild)
}

// onMembership calls changed after membership changes, until ctx is done:
// once per burst of events (a node joining announces several changes).
func (n *Node) onMembership(ctx context.Context, changed func()) {
	events, stop := n.cluster.Subscribe(64)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					return
				}
				for drained := false; !drained; {
					select {
					case _, ok := <-events:
						if !ok {
							return
						}
					default:
						drained = true
					}
				}
				changed()
			}
		}
	}()
}

// ServiceInstances returns the instances of service that take calls now,
// as the node's rpc clients of it see them: from membership, by name.
func (n *Node) ServiceInstances(service string) []rpc.Instance {
	return n.services.instances(service)
}

// serviceClients are the node's rpc clients of the services, one per
// service, made on first use and shared by every role of the node (the
// app, the worker, a service that calls another).
type serviceClients struct {
	mu      sync.Mutex
	clients map[string]*rpc.Client
	order   []string
}

// serviceClient returns the node's client of service: instances from
// membership, the service token derived from the cluster key, the node's
// client TLS, the service's own error codes.
func (n *Node) serviceClient(service string) *rpc.Client {
	c := &n.clients
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl := c.clients[service]; cl != nil {
		return cl
	}
	cl, err := rpc.New(rpc.Config{
		Service:   service,
		Instances: func() []rpc.Instance { return n.services.instances(service) },
		Token:     n.secrets.Service,
		TLS:       n.clientTLS(),
		Codes:     serviceCodes(service),
		Logger:    n.log.With("role", "rpc"), // the client adds service=NAME
	})
	if err != nil {
		// The config is the node's own: a bad one is a bug.
		panic("node: rpc client of " + service + ": " + err.Error())
	}
	if c.clients == nil {
		c.clients = map[string]*rpc.Client{}
	}
	c.clients[service] = cl
	c.order = append(c.order, service)
	return cl
}

// status returns each client's calls and breakers, in the order they were
// made; nil when the node calls no service.
func (c *serviceClients) status() []rpc.Status {
	c.mu.Lock()
	list := make([]*rpc.Client, 0, len(c.order))
	for _, name := range c.order {
		list = append(list, c.clients[name])
	}
	c.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	out := make([]rpc.Status, 0, len(list))
	for _, cl := range list {
		out = append(out, cl.Status())
	}
	return out
}

// close releases the clients' idle connections.
func (c *serviceClients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.clients {
		cl.Close()
	}
}

// servicesRole is the node's rpc clients as a role: its /status section
// "services" shows each client's calls and each instance's breaker, and
// it closes the clients after the roles that call through them (it opens
// before them).
type servicesRole struct{ n *Node }

func (r servicesRole) Open() error  { return nil }
func (r servicesRole) Close() error { r.n.clients.close(); return nil }
func (r servicesRole) Ready() bool  { return true }
func (r servicesRole) Status() any {
	if st := r.n.clients.status(); st != nil {
		return st
	}
	return nil
}
