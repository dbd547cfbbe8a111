package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/queue"
)

// PublisherConfig holds a Publisher's settings.
type PublisherConfig struct {
	// Name is the NATS connection's name (the node name).
	Name string
	// NATSPassword is presented to NATS servers that require one (derived
	// from the cluster key by the node). Empty presents none.
	NATSPassword string
	// NATSTLS, when not nil, is the client side of TLS to NATS servers that
	// require it (the node\'s --tls-ca). Nil speaks plain TCP.
	NATSTLS *tls.Config
	// Jobs configures the streams; PublishTimeout bounds an Enqueue. The
	// node gives the publisher the worker's, so that both name the same
	// streams.
	Jobs queue.JobsConfig
}

// PublisherDeps are what a Publisher is given.
type PublisherDeps struct {
	// NATS returns the client URLs of the NATS servers known now. Required.
	NATS func() []string
	// NATSServers returns how many NATS servers the cluster has, for the
	// streams' replicas. Nil means one.
	NATSServers func() int
	// Logger receives connection events and publish retries; nil discards.
	Logger *slog.Logger
}

// Publisher is the app's side of the queue (--jobs=queue): it implements
// app.Jobs by publishing each job to the work queue, and returns once
// JetStream has stored it, so the request does not wait for the work.
type Publisher struct {
	cfg    PublisherConfig
	deps   PublisherDeps
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	opened atomic.Bool

	mu    sync.Mutex
	conn  *queue.Conn
	q     *queue.JobQueue
	ready chan struct{} // closed once q is set
}

var _ app.Jobs = (*Publisher)(nil)

// NewPublisher builds a Publisher; it connects in Open.
func NewPublisher(cfg PublisherConfig, deps PublisherDeps) (*Publisher, error) {
	if err := cfg.Jobs.Validate(); err != nil {
		return nil, fmt.Errorf("worker: publisher: %w", err)
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("worker: publisher: %w", ErrNoNATS)
	}
	p := &Publisher{cfg: cfg, deps: deps, log: deps.Logger, done: make(chan struct{}), ready: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Open connects to NATS in the background: Enqueue waits for the
// connection within its own deadline.
func (p *Publisher) Open() error {
	if p.opened.Swap(true) {
		return errors.New("worker: publisher: already opened")
	}
	go p.connect()
	return nil
}

func (p *Publisher) connect() {
	defer close(p.done)
	cc := queue.DefaultClientConfig()
	cc.Servers, cc.Name, cc.Logger = p.deps.NATS, p.cfg.Name, p.log
	cc.Password = p.cfg.NATSPassword
	cc.TLS = p.cfg.NATSTLS
	conn, err := queue.Connect(p.ctx, cc)
	if err != nil {
		return
	}
	jc := p.cfg.Jobs
	jc.Servers, jc.Logger = p.deps.NATSServers, p.log
	q, err := queue.NewJobQueue(conn.JetStream(), jc)
	if err != nil {
		conn.Close()
		p.log.Error("worker: publisher", "err", err)
		return
	}
	p.mu.Lock()
	p.conn, p.q = conn, q
	p.mu.Unlock()
	close(p.ready)
}

// Ready reports whether the publisher is connected.
func (p *Publisher) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil && p.conn.Ready()
}

// Queue returns the job queue once connected, waiting for it within ctx.
func (p *Publisher) Queue(ctx context.Context) (*queue.JobQueue, error) {
	select {
	case <-p.ready:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.q, nil
	case <-p.ctx.Done():
		return nil, fmt.Errorf("worker: publisher closed: %w", queue.ErrUnavailable)
	case <-ctx.Done():
		return nil, fmt.Errorf("worker: publisher not connected yet: %w (%v)", queue.ErrUnavailable, ctx.Err())
	}
}

// Enqueue implements app.Jobs: it publishes j with its id as the
// deduplication key and its trace as the message's traceparent, retrying
// while NATS is briefly away (see queue.JobQueue.Publish).
func (p *Publisher) Enqueue(ctx context.Context, j app.Job) error {
	var q *queue.JobQueue
	select {
	case <-p.ready: // connected: Publish bounds itself by PublishTimeout
		p.mu.Lock()
		q = p.q
		p.mu.Unlock()
	default:
		wctx, cancel := context.WithTimeout(ctx, p.cfg.Jobs.PublishTimeout)
		defer cancel()
		var err error
		if q, err = p.Queue(wctx); err != nil {
			return err
		}
		ctx = wctx
	}
	if sc, err := tracectx.Parse(j.Trace); err == nil {
		ctx = tracectx.NewContext(ctx, sc)
	}
	if _, err := q.Publish(ctx, j.Kind, j.ID, j.Payload); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// Close stops connecting and closes the connection.
func (p *Publisher) Close() error {
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

// Status returns the connection's status.
func (p *Publisher) Status() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return queue.ConnStatus{}
	}
	return p.conn.Status()
}
