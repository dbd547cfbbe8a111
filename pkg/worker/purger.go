package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/cdn/purge"
	"github.com/scalestack/scalestack/pkg/queue"
)

// PurgerConfig holds a Purger's settings.
type PurgerConfig struct {
	// Name is the NATS connection's name (the node name).
	Name string
	// NATSPassword is presented to NATS servers that require one (derived
	// from the cluster key by the node). Empty presents none.
	NATSPassword string
	// NATSTLS, when not nil, is the client side of TLS to NATS servers that
	// require it (the node\'s --tls-ca). Nil speaks plain TCP.
	NATSTLS *tls.Config
	// Repeat sends each purge a second time this long after the first, for
	// an edge whose fill of the page was in flight when the purge came, and
	// that would otherwise store the page as it was before the write.
	// Default 500ms; 0 sends once. Longer leaves such a page stale longer;
	// shorter may still fall inside the fill.
	Repeat time.Duration
}

// PurgerDeps are what a Purger is given.
type PurgerDeps struct {
	// NATS returns the client URLs of the NATS servers known now. Required.
	// The Purger connects once it returns one; until then purges are held
	// in a bounded queue, then dropped (the edges, which learn of NATS the
	// same way, would not hear them either).
	NATS func() []string
	// Logger receives connection events and dropped purges; nil discards.
	Logger *slog.Logger
	// Metrics registers scalestack_app_purges_total; nil does not register.
	Metrics prometheus.Registerer
}

// DefaultPurgerConfig returns the defaults.
func DefaultPurgerConfig() PurgerConfig {
	return PurgerConfig{Name: "app-purges", Repeat: 500 * time.Millisecond}
}

// Purger implements app.Purger with core NATS publishes of the edge's purge
// messages (package purge): at most once, best effort, never blocking the request
// (nats.go buffers the publish; while reconnecting, in its reconnect
// buffer). Edges that miss one serve the page until its s-maxage.
type Purger struct {
	cfg    PurgerConfig
	deps   PurgerDeps
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	repeat chan repeatPurge

	purges       *prometheus.CounterVec // by outcome: sent, dropped
	opened       atomic.Bool
	nSent, nDrop atomic.Int64

	mu   sync.Mutex
	conn *queue.Conn
}

type repeatPurge struct {
	due  time.Time
	data []byte
}

var _ app.Purger = (*Purger)(nil)

// NewPurger builds a Purger; it connects in Open.
func NewPurger(cfg PurgerConfig, deps PurgerDeps) (*Purger, error) {
	if cfg.Repeat < 0 {
		return nil, fmt.Errorf("worker: purger: Repeat %v must not be negative", cfg.Repeat)
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("worker: purger: %w", ErrNoNATS)
	}
	p := &Purger{cfg: cfg, deps: deps, log: deps.Logger, done: make(chan struct{}), repeat: make(chan repeatPurge, 1024)}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.purges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "scalestack", Subsystem: "app", Name: "purges_total",
		Help: "Edge purges published on NATS (outcome sent), or dropped (no NATS connection, or a publish error).",
	}, []string{"outcome"})
	if deps.Metrics != nil {
		if err := deps.Metrics.Register(p.purges); err != nil {
			return nil, fmt.Errorf("worker: purger: metrics: %w", err)
		}
	}
	return p, nil
}

// Open starts connecting in the background, once a NATS server is known.
func (p *Purger) Open() error {
	if p.opened.Swap(true) {
		return errors.New("worker: purger: already opened")
	}
	go p.run()
	return nil
}

// run owns the connection and the repeats: it waits quietly for a NATS
// server (nodes of stages without NATS never log about it), connects,
// then sends the repeats as they fall due until Close.
func (p *Purger) run() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	for len(p.deps.NATS()) == 0 {
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	t.Stop()
	cc := queue.DefaultClientConfig()
	cc.Servers, cc.Name, cc.Logger = p.deps.NATS, p.cfg.Name, p.log
	cc.Password = p.cfg.NATSPassword
	cc.TLS = p.cfg.NATSTLS
	conn, err := queue.Connect(p.ctx, cc)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	p.log.Info("purges go to the edges over NATS", "subject", purge.Subject)
	for {
		select {
		case <-p.ctx.Done():
			return
		case r := <-p.repeat:
			if d := time.Until(r.due); d > 0 {
				w := time.NewTimer(d)
				select {
				case <-p.ctx.Done():
					w.Stop()
					return
				case <-w.C:
				}
			}
			p.publish(conn, r.data)
		}
	}
}

// Purge implements app.Purger.
func (p *Purger) Purge(_ context.Context, pg app.Purge) {
	p.mu.Lock()
	conn := p.conn
	p.mu.Unlock()
	data, err := purge.Encode(purge.Message{URLs: pg.URLs, Keys: pg.Keys})
	if err != nil {
		p.drop(err.Error(), pg)
		return
	}
	if conn == nil {
		// Not connected yet (a node is ready a moment before its NATS
		// connection is): hold the purge in the bounded queue of repeats,
		// which run sends as soon as it connects, instead of leaving an
		// edited page cached at the edges until it expires.
		select {
		case p.repeat <- repeatPurge{due: time.Now(), data: data}:
		default:
			p.drop("not connected to NATS", pg)
		}
		return
	}
	if !p.publish(conn, data) || p.cfg.Repeat == 0 {
		return
	}
	select {
	case p.repeat <- repeatPurge{due: time.Now().Add(p.cfg.Repeat), data: data}:
	default: // a burst of writes: the first sends have gone, skip repeats
	}
}

func (p *Purger) publish(conn *queue.Conn, data []byte) bool {
	if err := conn.NATS().Publish(purge.Subject, data); err != nil {
		p.drop(err.Error(), app.Purge{})
		return false
	}
	p.purges.WithLabelValues("sent").Inc()
	p.nSent.Add(1)
	return true
}

func (p *Purger) drop(why string, pg app.Purge) {
	p.purges.WithLabelValues("dropped").Inc()
	// One line per hundred drops: a node without NATS drops every purge.
	if p.nDrop.Add(1)%100 == 1 {
		p.log.Warn("edge purge dropped", "why", why, "keys", pg.Keys, "dropped", p.nDrop.Load())
	}
}

// Ready reports true: purges are best effort, and a node without NATS
// (stages 1-5) serves all the same. Status says whether they are sent.
func (p *Purger) Ready() bool { return true }

// Close stops the repeats and closes the connection, flushing what was
// published.
func (p *Purger) Close() error {
	p.cancel()
	if p.opened.Load() {
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		return p.conn.Close()
	}
	return nil
}

// PurgerStatus is the Purger's part of the node's /status.
type PurgerStatus struct {
	Connected bool  `json:"connected"`
	Sent      int64 `json:"sent"`
	Dropped   int64 `json:"dropped"`
	// Pending are purges held until the NATS connection is made, plus
	// repeats not yet due.
	Pending int `json:"pending"`
	NATS    any `json:"nats,omitempty"`
}

// Status returns a PurgerStatus.
func (p *Purger) Status() any {
	st := PurgerStatus{Sent: p.nSent.Load(), Dropped: p.nDrop.Load(), Pending: len(p.repeat)}
	p.mu.Lock()
	if p.conn != nil {
		st.Connected = p.conn.Ready()
		st.NATS = p.conn.Status()
	}
	p.mu.Unlock()
	return st
}
