package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The service role (stage 10, issue 18): `--roles service --service NAME`
// serves one service's API over the services' wire (pkg/app/svc/rpc) on
// the service port, over a store client of the service's own store group
// (--group, by default the service's name), and runs what the service
// needs beside its API (services.go, one entry per service): the events
// publisher of its outbox, the subscriber of the events it consumes, its
// background loops.

// validateService checks --service against the roles, and the group a
// service node's store client uses.
func (c *Config) validateService() error {
	if !c.Has(RoleService) {
		if c.Service != "" {
			return flagErr("service", "%q names the service of a service node: use it with --roles service", c.Service)
		}
		return nil
	}
	built := serviceNames()
	switch {
	case c.Service == "":
		return flagErr("service", "--roles service needs the service it serves: --service %s", strings.Join(built, "|"))
	case !slices.Contains(built, c.Service):
		return flagErr("service", "unknown service %q: services you can run are %s", c.Service, strings.Join(built, ", "))
	}
	if _, err := store.ParseGroup(c.serviceGroup()); err != nil {
		return flagErr("group", "%v", err)
	}
	if c.ServiceDrain < 0 {
		return flagErr("service-drain", "%v is negative", c.ServiceDrain)
	}
	return nil
}

// serviceGroup is the store group of a service node: --group, or the
// service's own name. One group per service is issue 18's design (each
// service has its own database), so the default needs no flag; --group
// names another only to share a group, e.g. --group default to run a
// service over the stage 1-9 store.
func (c *Config) serviceGroup() string {
	if g := c.RoleConfig.Store.Group; g != "" {
		return g
	}
	return c.Service
}

// openService opens the service role as four roles, in this order so that
// each closes after what uses it:
//
//   - "service-store", the store client of the service's group, closed
//     last: the publisher's last pass and the in-flight calls use it;
//   - "service-events", the publisher of the service's outbox (when it
//     writes events), closed after the API so that it publishes what the
//     last calls committed;
//   - "service", the API on the service port and the background loops;
//     its Close finishes the in-flight calls (the node has drained it
//     first: Close's drain delay, ServiceDrain);
//   - "service-subscriber", the consumer of the events the service takes
//     (when it takes some), closed first: an event in hand is finished,
//     the others stay in the stream for another instance.
func (n *Node) openService() error {
	spec, ok := lookupService(n.cfg.Service)
	if !ok { // Validate refused it
		return fmt.Errorf("unknown service %q", n.cfg.Service)
	}
	group, _ := store.ParseGroup(n.cfg.serviceGroup())
	base := n.log.With("role", "service")
	log := base.With("service", spec.name, "group", group)
	client := n.newGroupClient(group)
	if err := n.openRole("service-store", closerRole{client.Close}); err != nil {
		client.Close()
		return err
	}
	srv, err := rpc.NewServer(rpc.ServerConfig{
		Service:  spec.name,
		Instance: n.cfg.Name,
		Token:    n.secrets.Service,
		Codes:    spec.codes,
		Logger:   log,
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	var pub atomic.Pointer[events.Publisher]
	env := &serviceEnv{n: n, log: log, name: spec.name, group: group, store: client, server: srv,
		nudge: func() {
			if p := pub.Load(); p != nil {
				p.Nudge()
			}
		}}
	run, err := spec.open(env)
	if err != nil {
		return fmt.Errorf("service %s: %w", spec.name, err)
	}
	for _, u := range run.uses {
		if err := n.openRole(u.name, u.r); err != nil {
			return err
		}
	}
	if run.outbox != nil {
		ev := newEventsRole(n, n.cfg.Name+"-"+spec.name+"-events", base, func(bus eventBus) (eventsRunner, error) {
			pc := events.DefaultPublisherConfig()
			pc.Service, pc.Logger = spec.name, base // the publisher adds service=NAME
			p, err := events.NewPublisher(pc, run.outbox, bus)
			if err != nil {
				return nil, err
			}
			p.Open()
			pub.Store(p)
			return publisherRunner{p}, nil
		})
		if err := n.openRole("service-events", ev); err != nil {
			return err
		}
	}
	r := &serviceRole{
		n: n, log: log, name: spec.name, group: group,
		addr: n.listenAddr(n.cfg.Ports.Service), tls: n.serverTLS(),
		handler: srv, loops: run.loops,
	}
	if err := n.openRole("service", r); err != nil {
		return err
	}
	if len(run.subscriptions) > 0 {
		sub := newEventsRole(n, n.cfg.Name+"-"+spec.name+"-subscriber", base, func(bus eventBus) (eventsRunner, error) {
			sc := events.DefaultSubscriberConfig()
			sc.Service, sc.Logger = spec.name, base
			s, err := events.NewSubscriber(sc, bus, run.subscriptions...)
			if err != nil {
				return nil, err
			}
			s.Open()
			return subscriberRunner{s}, nil
		})
		if err := n.openRole("service-subscriber", sub); err != nil {
			return err
		}
	}
	return nil
}

// serviceRole serves a service's API and runs its loops.
type serviceRole struct {
	n       *Node
	log     *slog.Logger
	name    string
	group   string
	addr    string
	tls     *tls.Config
	handler http.Handler
	loops   []serviceLoop

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// serviceShutdown bounds how long Close waits for the in-flight calls
// (the rpc server's longest deadline is 60s; a call past this is cut).
const serviceShutdown = 30 * time.Second

func (r *serviceRole) Open() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return err
	}
	if r.tls != nil {
		ln = tls.NewListener(ln, r.tls)
	}
	r.ln = ln
	r.srv = &http.Server{Handler: r.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1 + len(r.loops))
	go func() {
		defer r.wg.Done()
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("service: serve", "err", err)
		}
	}()
	for _, l := range r.loops {
		go func() {
			defer r.wg.Done()
			l.run(ctx)
		}()
	}
	r.log.Info("service: serving", "addr", ln.Addr().String())
	return nil
}

// Close stops taking calls and waits for those in flight (the node has
// announced draining and waited ServiceDrain before, so that callers had
// stopped picking this instance), then stops the loops.
func (r *serviceRole) Close() error {
	var err error
	if r.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), serviceShutdown)
		err = r.srv.Shutdown(ctx)
		cancel()
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	return err
}

// Ready: serving, and the group has a primary to write to.
func (r *serviceRole) Ready() bool { return r.ln != nil && r.n.groupHasPrimary(r.group) }

// Addr is the bound address of the service port.
func (r *serviceRole) Addr() string {
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// serviceStatus is the role's part of /status.
type serviceStatus struct {
	Service      string `json:"service"`
	Group        string `json:"group"`
	Addr         string `json:"addr"`
	Ready        bool   `json:"ready"`
	StorePrimary bool   `json:"store_primary"`
	// Loops are the service's background loops' figures, by name.
	Loops map[string]any `json:"loops,omitempty"`
}

func (r *serviceRole) Status() any {
	primary := r.n.groupHasPrimary(r.group)
	st := serviceStatus{Service: r.name, Group: r.group, Addr: r.Addr(), Ready: r.ln != nil && primary, StorePrimary: primary}
	for _, l := range r.loops {
		if l.status != nil {
			if st.Loops == nil {
				st.Loops = map[string]any{}
			}
			st.Loops[l.name] = l.status()
		}
	}
	return st
}

// groupHasPrimary reports whether membership names a primary of group.
func (n *Node) groupHasPrimary(group string) bool {
	for _, s := range n.StoreNodes() {
		if s.Primary && s.Group == group {
			return true
		}
	}
	return false
}

// closerRole is a role that only closes something at the node's Close,
// in its place in the reverse order (a client the later roles use).
type closerRole struct{ close func() error }

func (c closerRole) Open() error  { return nil }
func (c closerRole) Close() error { return c.close() }
func (c closerRole) Ready() bool  { return true }
func (c closerRole) Status() any  { return nil }
