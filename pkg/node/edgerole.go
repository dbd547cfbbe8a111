package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scalestack/scalestack/pkg/cdn"
	"github.com/scalestack/scalestack/pkg/queue"
)

// openEdge builds and opens the edge role: origins are the load balancers
// in membership (or a fixed --edge-origin), purges arrive over NATS.
func (n *Node) openEdge() error {
	ec := n.cfg.RoleConfig.Edge
	ec.Addr = n.listenAddr(n.cfg.Ports.Edge)
	ec.NodeName = n.cfg.Name
	if ec.PurgeToken == "" {
		// With a key, purging over HTTP is on, behind the derived token.
		ec.PurgeToken = n.secrets.Purge
	}
	deps := cdn.Deps{Purges: &natsPurges{n: n}, Logger: n.log.With("role", "edge"), Metrics: n.reg}
	if ec.Origin == "" {
		deps.Origins = edgeOrigins{n}
	}
	e, err := cdn.New(ec, deps)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return n.openRole("edge", e)
}

// edgeOrigins gives the edge the load balancers from membership: alive lb
// members that are up.
type edgeOrigins struct{ n *Node }

func (o edgeOrigins) Origins() []string {
	if o.n == nil || o.n.cluster == nil {
		return nil
	}
	var out []string
	for _, m := range o.n.cluster.Up(RoleLB) {
		if a := m.RoleAddr("lb"); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// natsPurges subscribes to purge messages over a NATS connection made in
// the background: the edge must start even while no NATS server is known,
// and purges begin to arrive once one is.
type natsPurges struct {
	n          *Node
	subscribed atomic.Bool
}

// Subscribed reports whether purges arrive, or cannot yet because no NATS
// server is known at all (a cluster run with --nats off): the edge is not
// ready while a NATS server is known and its subscription is not live.
// When one appears later, the subscription tells the edge that purges were
// missed, and the edge drops whatever it stored before.
func (p *natsPurges) Subscribed() bool {
	return p.subscribed.Load() || len(p.n.natsClientURLs()) == 0
}

func (p *natsPurges) Subscribe(subject string, deliver func(data []byte), missed func()) (func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cc := queue.DefaultClientConfig()
		cc.Name = p.n.cfg.Name + "-edge-purges"
		cc.Servers, cc.Password, cc.TLS = p.n.natsClientURLs, p.n.secrets.NATS, p.n.clientTLS()
		cc.RetryInterval = 2 * time.Second
		cc.Logger = p.n.log.With("role", "edge")
		// Purges are core NATS: none reach the edge before it subscribes
		// or while its connection is down.
		cc.OnReconnect = missed
		conn, err := queue.Connect(ctx, cc)
		if err != nil {
			return // ctx ended before any NATS server was reachable
		}
		defer conn.Close()
		sub, err := conn.NATS().Subscribe(subject, func(m *nats.Msg) { deliver(m.Data) })
		if err != nil {
			p.n.log.Warn("subscribe to purges", "role", "edge", "subject", subject, "err", err)
			return
		}
		p.n.log.Info("listening for purges", "role", "edge", "subject", subject)
		missed()
		p.subscribed.Store(true)
		<-ctx.Done()
		sub.Unsubscribe()
	}()
	return func() { cancel(); <-done }, nil
}
