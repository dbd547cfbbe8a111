package node

import (
	"context"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/queue"
)

// Events between services (docs/events.md) over the node's NATS
// connection: the payments node publishes its outbox, the node that owns
// accounts (the app, at --jobs=queue) consumes badge.granted.

// eventBus is what publishers and subscribers run over: JetStream's stream
// of events (events.Bus and events.Source).
type eventBus = *queue.EventStream

// eventsRunner is a publisher or a subscriber started on the bus.
type eventsRunner interface {
	Close() error
	Status() any
	prometheus.Collector
}

// eventsRole connects to NATS in the background, as the app's job
// publisher does (membership may name no NATS server yet when the node
// starts), then starts its runner on the stream of events. It is always
// ready: a service's events wait in its outbox, and a consumer's in the
// stream, while NATS is away.
type eventsRole struct {
	n     *Node
	name  string
	log   *slog.Logger
	start func(eventBus) (eventsRunner, error)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	conn   *queue.Conn
	runner eventsRunner
	err    string
}

func newEventsRole(n *Node, name string, log *slog.Logger, start func(eventBus) (eventsRunner, error)) *eventsRole {
	return &eventsRole{n: n, name: name, log: log, start: start, done: make(chan struct{})}
}

func (r *eventsRole) Open() error {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.connect()
	return nil
}

func (r *eventsRole) connect() {
	defer close(r.done)
	cc := queue.DefaultClientConfig()
	cc.Servers, cc.Name, cc.Logger = r.n.natsClientURLs, r.name, r.log
	cc.Password, cc.TLS = r.n.secrets.NATS, r.n.clientTLS()
	conn, err := queue.Connect(r.ctx, cc)
	if err != nil {
		return // closed before a NATS server was reachable
	}
	ec := queue.DefaultEventsConfig()
	ec.Servers, ec.Logger = r.n.natsServerCount, r.log
	stream, err := queue.NewEventStream(conn.JetStream(), ec)
	var runner eventsRunner
	if err == nil {
		runner, err = r.start(stream)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		conn.Close()
		r.err = err.Error()
		r.log.Error("events: cannot start", "err", err)
		return
	}
	r.conn, r.runner = conn, runner
	if err := r.n.reg.Register(runner); err != nil {
		r.log.Warn("events: metrics not registered", "err", err)
	}
}

func (r *eventsRole) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.runner != nil {
		err = r.runner.Close()
		r.n.reg.Unregister(r.runner)
	}
	if r.conn != nil {
		r.conn.Close()
	}
	return err
}

func (r *eventsRole) Ready() bool { return true }

// eventsStatus is the role's part of /status: connected, and the
// publisher's or subscriber's own figures.
type eventsStatus struct {
	Connected bool   `json:"connected"`
	Error     string `json:"error,omitempty"`
	Events    any    `json:"events,omitempty"`
}

func (r *eventsRole) Status() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := eventsStatus{Connected: r.conn != nil && r.conn.Ready(), Error: r.err}
	if r.runner != nil {
		st.Events = r.runner.Status()
	}
	return st
}

// publisherRunner and subscriberRunner adapt the events package's types.
type publisherRunner struct{ *events.Publisher }

func (p publisherRunner) Status() any { return p.Publisher.Status() }

type subscriberRunner struct{ *events.Subscriber }

func (s subscriberRunner) Status() any { return s.Subscriber.Status() }

// openBadgeSubscriber opens, as the role "events", the users side of the
// supporter badge: an events subscriber of badge.granted that grants the
// badge through accounts (HandleBadgeGranted, once per event id), over the
// node's store client of the default group, where accounts live until the
// users service is a node of its own.
func (n *Node) openBadgeSubscriber() error {
	log := n.log.With("role", "app")
	users := accounts.New(n.client, n.cfg.RoleConfig.App.BcryptCost)
	r := newEventsRole(n, n.cfg.Name+"-events", log, func(bus eventBus) (eventsRunner, error) {
		sc := events.DefaultSubscriberConfig()
		sc.Service, sc.Logger = "users", log
		s, err := events.NewSubscriber(sc, bus, events.Subscription{Type: svc.EventBadgeGranted, Handle: users.HandleBadgeGranted})
		if err != nil {
			return nil, err
		}
		s.Open()
		return subscriberRunner{s}, nil
	})
	return n.openRole("events", r)
}
