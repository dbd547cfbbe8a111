package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/content"
	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The table of the stage-10 services a node can serve (--service NAME):
// for each, how the node opens it. A service node is the same for every
// service (servicerole.go): a store client of the service's group, an
// rpc.Server on the service port, an events publisher of the service's
// outbox when it writes events, a subscriber when it consumes some, and
// the service's background loops. An entry says what differs: which
// methods, which outbox, which subscriptions, which loops.

// serviceSpec is one service of the table.
type serviceSpec struct {
	// name is the service's name: --service, the rpc path segment, the
	// events' source and consumer name, the default store group.
	name string
	// codes are the service's own errors on the wire (its package's
	// Codes), given to its server and to every client of it.
	codes []rpc.Code
	// open builds the service over env (its store client, its server) and
	// registers its methods on env.server.
	open func(env *serviceEnv) (serviceRun, error)
}

// serviceEnv is what a service is opened with.
type serviceEnv struct {
	n     *Node
	log   *slog.Logger
	name  string
	group string
	// store is the client of the service's own store group.
	store *store.Client
	// server serves the service's methods on the service port.
	server *rpc.Server
	// nudge tells the service's events publisher that the service has
	// committed events (payments.Service.EventsCommitted): they leave at
	// once rather than at the next sweep. Safe to call before the
	// publisher is connected (it then does nothing).
	nudge func()
}

// client returns the node's rpc client of another service, for a service
// that calls others (notifications reads posts from content).
func (e *serviceEnv) client(name string) *rpc.Client { return e.n.serviceClient(name) }

// serviceRun is what the node runs beside a service's API.
type serviceRun struct {
	// outbox is the service's event outbox, published by the node; nil
	// when the service writes no events.
	outbox events.Outbox
	// subscriptions are the events the service consumes; none: no
	// subscriber.
	subscriptions []events.Subscription
	// loops are the service's background work (payments' sweep), each run
	// in a goroutine of the role until it closes.
	loops []serviceLoop
	// uses are what the service's methods use beside its store client (the
	// users service's cache tier), each a role of the node opened before
	// the API and closed after it.
	uses []namedRole
}

// serviceLoop is a background loop of a service.
type serviceLoop struct {
	name string
	// run works until ctx is done.
	run func(ctx context.Context)
	// status is the loop's part of /status, nil for none.
	status func() any
}

// serviceTable is every service a node can serve (the table of
// docs/services.md, "Service nodes"), in the order help lists them.
func serviceTable() []serviceSpec {
	return []serviceSpec{
		{name: accounts.Name, codes: append(slices.Clone(accounts.Codes), app.SessionCodes...), open: openUsers},
		{name: content.Name, open: openContent},
		{name: search.Name, open: openSearch},
		{name: notify.Name, open: openNotifications},
		{name: payments.Name, codes: payments.Codes, open: openPayments},
	}
}

// lookupService finds name in the table.
func lookupService(name string) (serviceSpec, bool) {
	i := slices.IndexFunc(serviceTable(), func(s serviceSpec) bool { return s.name == name })
	if i < 0 {
		return serviceSpec{}, false
	}
	return serviceTable()[i], true
}

// serviceNames lists the services of the table.
func serviceNames() []string {
	var out []string
	for _, s := range serviceTable() {
		out = append(out, s.name)
	}
	return out
}

// serviceCodes returns the wire codes of the service name (nil for one
// the table does not know, whose callers then read the wire's own table).
func serviceCodes(name string) []rpc.Code {
	s, _ := lookupService(name)
	return s.codes
}

// Users: accounts (users, follows, badges) and the sessions the gateways
// keep, over the users group. Sign-up writes user.signed_up in the
// account's transaction; the badge payments sell is granted here, once per
// badge.granted event.
func openUsers(env *serviceEnv) (serviceRun, error) {
	users := accounts.New(env.store, env.n.cfg.RoleConfig.App.BcryptCost)
	out := users.Outbox()
	accounts.Register(env.server, users, out)
	tier, err := env.n.sessionTier(env)
	if err != nil {
		return serviceRun{}, err
	}
	app.RegisterSessions(env.server, app.NewSharedSessions(env.store, tier))
	return serviceRun{
		outbox:        out,
		subscriptions: []events.Subscription{{Type: svc.EventBadgeGranted, Handle: users.HandleBadgeGranted}},
		uses:          []namedRole{{"service-cache", tierRole{tier}}},
	}, nil
}

// sessionTier is the cache tier of the users service's sessions, as the
// app's shared sessions had at stage 7: over the cache nodes membership
// names (none: every session read goes to the store), sealed with the
// cluster's key, its tombstones in the users group's LSNs.
func (n *Node) sessionTier(env *serviceEnv) (*cachetier.Tier, error) {
	ac := n.appConfig()
	tc := ac.CacheTier
	tc.Nodes, tc.Group, tc.Logger = n.cacheNodes, env.group, env.log
	if len(ac.CacheMACKey) > 0 {
		tc.MACKey = ac.CacheMACKey
	}
	t, err := cachetier.New(tc)
	if err != nil {
		return nil, fmt.Errorf("sessions cache tier: %w", err)
	}
	return t, nil
}

// tierRole runs a cache tier as a role of the node.
type tierRole struct{ t *cachetier.Tier }

func (r tierRole) Open() error  { return r.t.Open() }
func (r tierRole) Close() error { return r.t.Close() }
func (r tierRole) Ready() bool  { return true }
func (r tierRole) Status() any  { return r.t.Stats() }

// Content: posts, comments and media over the content group, its events
// (post.published, post.changed, comment.added) in each write's
// transaction, nudging the publisher; it consumes its own events for the
// follow-ups that were the app's jobs (the thumbnail, the comment count).
func openContent(env *serviceEnv) (serviceRun, error) {
	d := content.Deps{
		Posts:           posts.New(env.store),
		Comments:        comments.New(env.store),
		Media:           media.New(env.store),
		Outbox:          svc.OutboxOf(env.store, content.Name),
		EventsCommitted: env.nudge,
	}
	content.Register(env.server, d)
	return serviceRun{outbox: d.Outbox, subscriptions: subscriptions(content.Handlers(d))}, nil
}

// Search: the index over the search group; it re-indexes a post on
// post.changed, reading the post as it is now from the content service.
func openSearch(env *serviceEnv) (serviceRun, error) {
	s := search.New(env.store)
	search.Register(env.server, s)
	services := env.n.remoteServices()
	services.Search = s
	h := app.NewHandlers(services, env.n.mailOutbox(), env.log)
	return serviceRun{subscriptions: subscriptions(h.EventHandlers(search.Name))}, nil
}

// Notifications: in-app notifications over the notifications group, and
// the e-mail: it tells followers of post.published (content's post, users'
// followers), a post's author of comment.added, and writes the welcome
// e-mail of user.signed_up into the node's mail outbox folder.
func openNotifications(env *serviceEnv) (serviceRun, error) {
	s := notify.New(env.store)
	notify.Register(env.server, s)
	services := env.n.remoteServices()
	services.Notifications = s
	h := app.NewHandlers(services, env.n.mailOutbox(), env.log)
	return serviceRun{subscriptions: subscriptions(h.EventHandlers(notify.Name))}, nil
}

// subscriptions turns a service's handlers by event type into the
// subscriber's list, by type.
func subscriptions(handlers map[string]func(context.Context, svc.Event) error) []events.Subscription {
	var out []events.Subscription
	for _, typ := range slices.Sorted(maps.Keys(handlers)) {
		out = append(out, events.Subscription{Type: typ, Handle: handlers[typ]})
	}
	return out
}

// Payments: the service over its group, the simulated card processor, the
// publisher of its outbox (badge.granted) nudged after each commit, and
// the sweep that settles the payments nobody retried.
func openPayments(env *serviceEnv) (serviceRun, error) {
	pay := payments.New(env.store, payments.NewSimulated())
	pay.EventsCommitted = env.nudge
	payments.Register(env.server, pay)
	sweep := &settleSweep{env: env, pay: pay}
	return serviceRun{
		outbox: pay.Outbox(),
		loops:  []serviceLoop{{name: "settle", run: sweep.run, status: sweep.status}},
	}, nil
}

// Timers of the payments node. The sweep leaves alone the payments younger
// than twice the processor's timeout, whose calls may still be waiting for
// their answer.
const (
	settleInterval = 10 * time.Second
	settleMinAge   = 2 * payments.DefaultChargeTimeout
)

// settleSweep settles, every settleInterval, the payments nobody retried
// (payments.SettlePending), while the group has a primary.
type settleSweep struct {
	env *serviceEnv
	pay *payments.Service

	mu          sync.Mutex
	settled     int
	lastSettle  time.Time
	settleError string
}

func (s *settleSweep) run(ctx context.Context) {
	t := time.NewTicker(settleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.env.n.groupHasPrimary(s.env.group) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, settleInterval)
		n, err := s.pay.SettlePending(sctx, settleMinAge)
		cancel()
		s.mu.Lock()
		s.settled += n
		s.lastSettle = time.Now()
		prev := s.settleError
		s.settleError = ""
		if err != nil {
			s.settleError = err.Error()
		}
		s.mu.Unlock()
		switch {
		case err != nil && prev == "":
			s.env.log.Warn("payments: settling pending payments failed; retried every interval", "err", err, "every", settleInterval)
		case err == nil && prev != "":
			s.env.log.Info("payments: settling pending payments works again")
		}
		if n > 0 {
			s.env.log.Info("payments: settled pending payments nobody retried", "settled", n)
		}
	}
}

// settleStatus is the sweep's part of /status.
type settleStatus struct {
	Settled      int       `json:"settled"`
	LastSettle   time.Time `json:"last_settle,omitzero"`
	SettleError  string    `json:"settle_error,omitempty"`
	SettleEvery  string    `json:"settle_every"`
	SettleMinAge string    `json:"settle_min_age"`
}

func (s *settleSweep) status() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return settleStatus{Settled: s.settled, LastSettle: s.lastSettle, SettleError: s.settleError,
		SettleEvery: settleInterval.String(), SettleMinAge: settleMinAge.String()}
}
