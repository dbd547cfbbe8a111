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
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The service role (stage 10, issue 18): `--roles service --service NAME`
// serves one service's API over the services' wire (pkg/app/svc/rpc) on
// the service port, over a store client of the service's own store group
// (--group, by default the service's name), and runs what the service
// needs beside its API: for payments, the events publisher of its outbox
// and the sweep of the payments nobody retried.

// builtServices can run as a service node; plannedServices are issue 18's
// others, refused with a message naming the built ones.
var (
	builtServices   = []string{payments.Name}
	plannedServices = []string{"users", "content", "search", "notifications"}
)

// Timers of the payments node. The sweep leaves alone the payments younger
// than twice the processor's timeout, whose calls may still be waiting for
// their answer.
const (
	settleInterval = 10 * time.Second
	settleMinAge   = 2 * payments.DefaultChargeTimeout
)

// validateService checks --service against the roles, and the group a
// service node's store client uses.
func (c *Config) validateService() error {
	if !c.Has(RoleService) {
		if c.Service != "" {
			return flagErr("service", "%q names the service of a service node: use it with --roles service", c.Service)
		}
		return nil
	}
	switch {
	case c.Service == "":
		return flagErr("service", "--roles service needs the service it serves: --service %s", strings.Join(builtServices, "|"))
	case slices.Contains(plannedServices, c.Service):
		return flagErr("service", "the %s service is planned (issue 18) but not built yet: services you can run are %s", c.Service, strings.Join(builtServices, ", "))
	case !slices.Contains(builtServices, c.Service):
		return flagErr("service", "unknown service %q: services you can run are %s (planned: %s)", c.Service, strings.Join(builtServices, ", "), strings.Join(plannedServices, ", "))
	}
	if _, err := store.ParseGroup(c.serviceGroup()); err != nil {
		return flagErr("group", "%v", err)
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

// openService opens the service role: the events connection first (as a
// role of its own, "service-events", so that it closes after the service
// has stopped committing), then the API.
func (n *Node) openService() error {
	group, _ := store.ParseGroup(n.cfg.serviceGroup())
	base := n.log.With("role", "service")
	log := base.With("service", n.cfg.Service, "group", group)
	client := n.newGroupClient(group)
	pay := payments.New(client, payments.NewSimulated())

	var pub atomic.Pointer[events.Publisher]
	ev := newEventsRole(n, n.cfg.Name+"-"+n.cfg.Service+"-events", base, func(bus eventBus) (eventsRunner, error) {
		pc := events.DefaultPublisherConfig()
		pc.Service, pc.Logger = payments.Source, base // the publisher adds service=payments
		p, err := events.NewPublisher(pc, pay.Outbox(), bus)
		if err != nil {
			return nil, err
		}
		p.Open()
		pub.Store(p)
		return publisherRunner{p}, nil
	})
	pay.EventsCommitted = func() {
		if p := pub.Load(); p != nil {
			p.Nudge()
		}
	}
	if err := n.openRole("service-events", ev); err != nil {
		client.Close()
		return err
	}

	srv, err := rpc.NewServer(rpc.ServerConfig{
		Service:  payments.Name,
		Instance: n.cfg.Name,
		Token:    n.secrets.Service,
		Codes:    payments.Codes,
		Logger:   log,
	})
	if err != nil {
		client.Close()
		return fmt.Errorf("service: %w", err)
	}
	payments.Register(srv, pay)
	r := &serviceRole{
		n: n, log: log, name: n.cfg.Service, group: group,
		addr: n.listenAddr(n.cfg.Ports.Service), tls: n.serverTLS(),
		client: client, pay: pay, handler: srv,
	}
	if err := n.openRole("service", r); err != nil {
		client.Close()
		return err
	}
	return nil
}

// serviceRole serves a service's API and runs its sweep.
type serviceRole struct {
	n       *Node
	log     *slog.Logger
	name    string
	group   string
	addr    string
	tls     *tls.Config
	client  *store.Client
	pay     *payments.Service
	handler http.Handler

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	settled     int
	lastSettle  time.Time
	settleError string
}

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
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("service: serve", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		r.sweep(ctx)
	}()
	r.log.Info("service: serving", "addr", ln.Addr().String())
	return nil
}

// sweep settles, every settleInterval, the payments nobody retried
// (payments.SettlePending), while the group has a primary.
func (r *serviceRole) sweep(ctx context.Context) {
	t := time.NewTicker(settleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.hasPrimary() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, settleInterval)
		n, err := r.pay.SettlePending(sctx, settleMinAge)
		cancel()
		r.mu.Lock()
		r.settled += n
		r.lastSettle = time.Now()
		prev := r.settleError
		r.settleError = ""
		if err != nil {
			r.settleError = err.Error()
		}
		r.mu.Unlock()
		switch {
		case err != nil && prev == "":
			r.log.Warn("payments: settling pending payments failed; retried every interval", "err", err, "every", settleInterval)
		case err == nil && prev != "":
			r.log.Info("payments: settling pending payments works again")
		}
		if n > 0 {
			r.log.Info("payments: settled pending payments nobody retried", "settled", n)
		}
	}
}

// hasPrimary reports whether membership names a primary of the group.
func (r *serviceRole) hasPrimary() bool {
	for _, s := range r.n.StoreNodes() {
		if s.Primary && s.Group == r.group {
			return true
		}
	}
	return false
}

func (r *serviceRole) Close() error {
	var err error
	if r.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = r.srv.Shutdown(ctx)
		cancel()
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.client.Close()
	return err
}

// Ready: serving, and the group has a primary to write to.
func (r *serviceRole) Ready() bool { return r.ln != nil && r.hasPrimary() }

// Addr is the bound address of the service port.
func (r *serviceRole) Addr() string {
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

// serviceStatus is the role's part of /status.
type serviceStatus struct {
	Service      string    `json:"service"`
	Group        string    `json:"group"`
	Addr         string    `json:"addr"`
	Ready        bool      `json:"ready"`
	StorePrimary bool      `json:"store_primary"`
	Settled      int       `json:"settled"`
	LastSettle   time.Time `json:"last_settle,omitzero"`
	SettleError  string    `json:"settle_error,omitempty"`
	SettleEvery  string    `json:"settle_every"`
	SettleMinAge string    `json:"settle_min_age"`
}

func (r *serviceRole) Status() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	primary := r.hasPrimary()
	return serviceStatus{
		Service: r.name, Group: r.group, Addr: r.Addr(), Ready: r.ln != nil && primary, StorePrimary: primary,
		Settled: r.settled, LastSettle: r.lastSettle, SettleError: r.settleError,
		SettleEvery: settleInterval.String(), SettleMinAge: settleMinAge.String(),
	}
}
