// Package events carries the blog's events between services: a Publisher
// that moves a service's outbox (svc.EventOutbox) to the queue's stream of
// events after each commit, and a Subscriber that hands a service the
// events it consumes, acknowledging each once its handler has committed.
//
// The services themselves never see the transport (internal/importrules):
// a service writes an svc.Event into its outbox in the transaction of the
// change, and exposes a handler of svc.Event that applies it once by id
// (svc.ApplyOnce). The node wires the two ends to NATS JetStream
// (queue.EventStream). docs/events.md has the subjects, the stream and the
// exactly-once-in-effect argument.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Outbox is a service's outbox as the Publisher reads it;
// svc.EventOutbox implements it.
type Outbox interface {
	// Pending returns up to limit events whose ids sort after after,
	// oldest first, the keys of entries that are not events, and the
	// after of the next page ("" when there is none).
	Pending(ctx context.Context, after string, limit int) (evs []svc.Event, undecodable []string, next string, err error)
	// Remove deletes events from the outbox; a missing id is no error.
	Remove(ctx context.Context, ids ...string) error
}

// Bus is where events are published; queue.EventStream implements it.
type Bus interface {
	// Publish stores an event of typ with id as its deduplication key and
	// body as its message, and returns once it is durable. duplicate
	// reports that the bus had the id already.
	Publish(ctx context.Context, typ, id string, body []byte) (duplicate bool, err error)
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Service names the outbox's service in logs and Status. Required.
	Service string
	// Sweep is how often the outbox is read when nothing nudged the
	// publisher: what publishes the events of a commit whose nudge was
	// lost (the service died between its commit and its publish) or that
	// another instance of the service committed. Default 1s: an event
	// waits at most that long after a lost nudge; shorter costs a store
	// scan per interval per instance.
	Sweep time.Duration
	// RetryMin and RetryMax bound the wait before reading the outbox again
	// after a failed publish or a failed store call: RetryMin, doubled per
	// failure up to RetryMax. Nudges are ignored meanwhile, so commits
	// during a queue outage do not hammer it. Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// Batch is how many events one outbox read returns. Default 100
	// (svc.MaxOutboxBatch).
	Batch int
	// Logger receives the outages (once when they start, once when they
	// end); nil discards.
	Logger *slog.Logger
}

// DefaultPublisherConfig returns the defaults; Service must still be set.
func DefaultPublisherConfig() PublisherConfig {
	return PublisherConfig{Sweep: time.Second, RetryMin: 100 * time.Millisecond, RetryMax: 10 * time.Second, Batch: svc.MaxOutboxBatch}
}

// Validate reports the first invalid field.
func (c *PublisherConfig) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("events: PublisherConfig.Service is required")
	case c.Sweep <= 0:
		return fmt.Errorf("events: Sweep %v must be positive", c.Sweep)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("events: RetryMin %v must be positive and at most RetryMax %v", c.RetryMin, c.RetryMax)
	case c.Batch < 1 || c.Batch > svc.MaxOutboxBatch:
		return fmt.Errorf("events: Batch %d must be 1 to %d", c.Batch, svc.MaxOutboxBatch)
	}
	return nil
}

// Publisher publishes one service's outbox: it reads the outbox oldest
// first, publishes each event with its id as the deduplication key, and
// removes the events the bus has acknowledged. It runs after each commit
// (Nudge) and every Sweep; while the bus or the store fails it waits
// RetryMin doubling to RetryMax between attempts, and logs an outage once
// when it starts and once when it ends.
//
// One goroutine publishes, so one publisher publishes the outbox in id
// order and stops at the first failure: an event is never published
// before an older one of its outbox was acknowledged. Several instances of
// a service each run a publisher over the same outbox; they may publish
// an event twice, which the bus's deduplication and the consumers' applied
// ids absorb (docs/events.md).
type Publisher struct {
	cfg    PublisherConfig
	outbox Outbox
	bus    Bus
	log    *slog.Logger

	nudge  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	published, duplicates, failures, storeErrors atomic.Int64
	pending, undecodable                         atomic.Int64

	// busDown and storeDown are set while the last publish, or the last
	// store call, failed, so that an outage is logged when it starts and
	// when it ends rather than once per attempt.
	mu                 sync.Mutex
	busDown, storeDown bool

	descs publisherDescs
}

// NewPublisher returns a publisher of outbox to bus. Open starts it.
func NewPublisher(cfg PublisherConfig, outbox Outbox, bus Bus) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if outbox == nil || bus == nil {
		return nil, errors.New("events: NewPublisher needs an outbox and a bus")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg, outbox: outbox, bus: bus, log: log.With("service", cfg.Service),
		nudge: make(chan struct{}, 1), descs: newPublisherDescs(cfg.Service)}, nil
}

// Open starts publishing: a first pass over the outbox at once (what an
// earlier run left), then after each nudge and every Sweep.
func (p *Publisher) Open() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	p.Nudge()
	go p.loop()
}

// Close stops the publisher and waits for it. An event being published
// when it stops stays in the outbox, for the next run or another
// instance: published again, deduplicated.
func (p *Publisher) Close() error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	<-p.done
	return nil
}

// Nudge asks the publisher to read the outbox now, without waiting: a
// service's caller calls it after each commit that wrote an event. Nudges
// while a read is under way are folded into one more read.
func (p *Publisher) Nudge() {
	select {
	case p.nudge <- struct{}{}:
	default:
	}
}

func (p *Publisher) loop() {
	defer close(p.done)
	t := time.NewTimer(p.cfg.Sweep)
	defer t.Stop()
	wait := time.Duration(0) // the backoff while failing; 0 while healthy
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.nudge:
			if wait > 0 {
				continue // failing: only the timer tries again
			}
		case <-t.C:
		}
		if err := p.drain(p.ctx); err != nil {
			if p.ctx.Err() != nil {
				return
			}
			wait = min(max(2*wait, p.cfg.RetryMin), p.cfg.RetryMax)
		} else {
			wait = 0
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if wait > 0 {
			t.Reset(wait)
		} else {
			t.Reset(p.cfg.Sweep)
		}
	}
}

// drain publishes the whole outbox, page by page, oldest first, and
// removes what the bus acknowledged. It stops at the first failed publish
// or store call, so no event overtakes an older one.
func (p *Publisher) drain(ctx context.Context) error {
	var pending, undecodable int64
	for after := ""; ; {
		evs, bad, next, err := p.outbox.Pending(ctx, after, p.cfg.Batch)
		if err != nil {
			p.storeFailed("read the outbox", err)
			return err
		}
		p.storeOK()
		undecodable += int64(len(bad))
		var acked []string
		var perr error
		for _, ev := range evs {
			if perr = p.publish(ctx, ev); perr != nil {
				break
			}
			acked = append(acked, ev.ID)
		}
		if len(acked) > 0 {
			if err := p.outbox.Remove(ctx, acked...); err != nil {
				// Published: the next read publishes them again, and the
				// bus drops the duplicates.
				p.storeFailed("remove published events", err)
				return err
			}
		}
		if perr != nil {
			pending += int64(len(evs) - len(acked))
			p.pending.Store(pending)
			return perr
		}
		if next == "" {
			break
		}
		after = next
	}
	p.pending.Store(pending)
	if p.undecodable.Swap(undecodable) != undecodable && undecodable > 0 {
		p.log.Error("events: outbox entries that are not events; left in place", "count", undecodable)
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, ev svc.Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("events: encode %s: %w", ev.ID, err)
	}
	dup, err := p.bus.Publish(ctx, ev.Type, ev.ID, body)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		p.failures.Add(1)
		p.mu.Lock()
		down := p.busDown
		p.busDown = true
		p.mu.Unlock()
		if !down {
			p.log.Warn("events: queue unreachable; events wait in the outbox until it is back", "type", ev.Type, "id", ev.ID, "err", err)
		} else {
			p.log.Debug("events: publish failed", "type", ev.Type, "id", ev.ID, "err", err)
		}
		return err
	}
	p.published.Add(1)
	if dup {
		p.duplicates.Add(1)
	}
	p.mu.Lock()
	down := p.busDown
	p.busDown = false
	p.mu.Unlock()
	if down {
		p.log.Info("events: queue reachable again")
	}
	return nil
}

func (p *Publisher) storeFailed(what string, err error) {
	if p.ctx.Err() != nil {
		return
	}
	p.storeErrors.Add(1)
	p.mu.Lock()
	down := p.storeDown
	p.storeDown = true
	p.mu.Unlock()
	if !down {
		p.log.Warn("events: outbox: store unavailable; the publisher waits for it", "op", what, "err", err)
	} else {
		p.log.Debug("events: outbox: store call failed", "op", what, "err", err)
	}
}

func (p *Publisher) storeOK() {
	p.mu.Lock()
	down := p.storeDown
	p.storeDown = false
	p.mu.Unlock()
	if down {
		p.log.Info("events: outbox: store reachable again")
	}
}

// PublisherStatus is a publisher's part of its node's /status.
type PublisherStatus struct {
	Service string `json:"service"`
	// Pending is how many events the last pass read and did not publish:
	// 0 after a pass that published everything; while publishing fails,
	// those of the page it stopped in (later pages are not read, so there
	// may be more).
	Pending int64 `json:"pending"`
	// Published counts the events the bus acknowledged; Duplicates those of
	// them it had already (a republish after a crash, another instance).
	Published  int64 `json:"published"`
	Duplicates int64 `json:"duplicates"`
	// PublishFailures counts failed publishes, StoreErrors failed reads and
	// removes of the outbox; the events stay in the outbox.
	PublishFailures int64 `json:"publish_failures"`
	StoreErrors     int64 `json:"store_errors"`
	// Undecodable is how many outbox entries the last pass could not read
	// as events (left in place).
	Undecodable int64 `json:"undecodable"`
	// QueueDown and StoreDown say the last publish, or store call, failed.
	QueueDown bool `json:"queue_down"`
	StoreDown bool `json:"store_down"`
}

// Status returns the publisher's figures.
func (p *Publisher) Status() PublisherStatus {
	p.mu.Lock()
	busDown, storeDown := p.busDown, p.storeDown
	p.mu.Unlock()
	return PublisherStatus{Service: p.cfg.Service, Pending: p.pending.Load(), Published: p.published.Load(),
		Duplicates: p.duplicates.Load(), PublishFailures: p.failures.Load(), StoreErrors: p.storeErrors.Load(),
		Undecodable: p.undecodable.Load(), QueueDown: busDown, StoreDown: storeDown}
}
