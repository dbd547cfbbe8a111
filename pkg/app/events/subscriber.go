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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Handler applies one event to a service. It must be idempotent by the
// event's id (svc.ApplyOnce): an event can be delivered more than once.
// An error matching svc.ErrBadEvent drops the event (it can never be
// applied); any other error has it delivered again later.
type Handler func(ctx context.Context, ev svc.Event) error

// Subscription is one type of event a service consumes, and its handler.
type Subscription struct {
	Type   string
	Handle Handler
}

// Source gives a service its durable consumer of a type of event;
// queue.EventStream implements it.
type Source interface {
	Consumer(ctx context.Context, service, typ string) (jetstream.Consumer, error)
}

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Service is the consuming service; with each type it names the
	// durable consumer its instances share. Required.
	Service string
	// HandlerTimeout bounds one call of a handler; a handler that runs
	// out fails and its event is delivered again. It must be shorter
	// than the stream's AckWait (60s). Default 30s.
	HandlerTimeout time.Duration
	// RetryBase is the delay before a failed event is delivered again;
	// each further failure doubles it, up to RetryMax. The same delays
	// space the attempts to create the consumer while the queue is down.
	// Defaults 1s and 1m.
	RetryBase, RetryMax time.Duration
	// Buffer is how many events nats.go fetches ahead per subscription.
	// Events are handled one at a time per subscription; a buffered event
	// not handled when the subscriber closes is delivered again after the
	// stream's AckWait. Default 8.
	Buffer int
	// Logger receives failures and outages; nil discards.
	Logger *slog.Logger
}

// DefaultSubscriberConfig returns the defaults; Service must still be set.
func DefaultSubscriberConfig() SubscriberConfig {
	return SubscriberConfig{HandlerTimeout: 30 * time.Second, RetryBase: time.Second, RetryMax: time.Minute, Buffer: 8}
}

// Validate reports the first invalid field.
func (c *SubscriberConfig) Validate() error {
	switch {
	case c.Service == "":
		return errors.New("events: SubscriberConfig.Service is required")
	case c.HandlerTimeout <= 0:
		return fmt.Errorf("events: HandlerTimeout %v must be positive", c.HandlerTimeout)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("events: RetryBase %v must be positive and at most RetryMax %v", c.RetryBase, c.RetryMax)
	case c.Buffer < 1:
		return fmt.Errorf("events: Buffer %d must be at least 1", c.Buffer)
	}
	return nil
}

// Subscriber runs one service's subscriptions: for each, a durable pull
// consumer of the stream of events, whose events it hands to the handler
// one at a time, acknowledging each once the handler has returned (and so
// committed). A failed event is delivered again after RetryBase doubling
// to RetryMax, without limit: an event is not lost because its consumer's
// store was down for a while. An event that can never be applied (it does
// not decode, or the handler says svc.ErrBadEvent) is dropped and logged
// at error.
type Subscriber struct {
	cfg  SubscriberConfig
	src  Source
	subs []*subscription
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}
	nReady atomic.Int32

	descs subscriberDescs
}

type subscription struct {
	Subscription
	// consuming says the consumer is being fetched from now, consumed
	// that it has been once (what Ready waits for).
	consuming, consumed atomic.Bool
	// handled counts the events acked after their handler succeeded,
	// retried the failures delivered again, rejected the bad events
	// dropped, redelivered the deliveries that were not the first.
	handled, retried, rejected, redelivered atomic.Int64
}

// NewSubscriber returns a subscriber of service to subs over src. Open
// starts it.
func NewSubscriber(cfg SubscriberConfig, src Source, subs ...Subscription) (*Subscriber, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("events: NewSubscriber needs a source")
	}
	s := &Subscriber{cfg: cfg, src: src, ready: make(chan struct{}), descs: newSubscriberDescs(cfg.Service)}
	seen := map[string]bool{}
	for _, sub := range subs {
		switch {
		case !svc.ValidEventType(sub.Type):
			return nil, fmt.Errorf("events: subscription to %q: not an event type", sub.Type)
		case sub.Handle == nil:
			return nil, fmt.Errorf("events: subscription to %s: no handler", sub.Type)
		case seen[sub.Type]:
			return nil, fmt.Errorf("events: two subscriptions to %s", sub.Type)
		}
		seen[sub.Type] = true
		s.subs = append(s.subs, &subscription{Subscription: sub})
	}
	if len(s.subs) == 0 {
		return nil, errors.New("events: NewSubscriber needs a subscription")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.log = log.With("service", cfg.Service)
	return s, nil
}

// Open starts consuming. It does not wait for the queue: each
// subscription creates its consumer when it can (Ready).
func (s *Subscriber) Open() {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, sub := range s.subs {
		s.wg.Add(1)
		go s.run(sub)
	}
}

// Ready is closed once every subscription has consumed: its durable
// consumer exists and events are being fetched.
func (s *Subscriber) Ready() <-chan struct{} { return s.ready }

// Close stops fetching, lets the events in hand finish (each bounded by
// HandlerTimeout) and returns. Events fetched ahead and not handled are
// delivered again after the stream's AckWait, to another instance or to
// this one when it is back.
func (s *Subscriber) Close() error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Subscriber) backoff(failures uint64) time.Duration {
	d := s.cfg.RetryBase
	for i := uint64(1); i < failures && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.cfg.RetryMax)
}

// run keeps sub's consumer consuming until Close: it creates the consumer
// (again after the queue lost it), and iterates its messages.
func (s *Subscriber) run(sub *subscription) {
	defer s.wg.Done()
	log := s.log.With("type", sub.Type)
	failures := uint64(0)
	for s.ctx.Err() == nil {
		err := s.consume(sub, log)
		if s.ctx.Err() != nil {
			return
		}
		if sub.consuming.Swap(false) {
			failures = 0 // it had worked: the outage starts now
		}
		failures++
		if failures == 1 {
			log.Warn("events: cannot consume; trying again", "err", err)
		} else {
			log.Debug("events: cannot consume", "err", err, "attempt", failures)
		}
		t := time.NewTimer(s.backoff(failures))
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// consume creates sub's consumer and handles its messages until the
// subscriber closes (nil) or the iteration fails.
func (s *Subscriber) consume(sub *subscription, log *slog.Logger) error {
	c, err := s.src.Consumer(s.ctx, s.cfg.Service, sub.Type)
	if err != nil {
		return err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(s.cfg.Buffer))
	if err != nil {
		return fmt.Errorf("events: consume %s: %w", sub.Type, err)
	}
	stop := context.AfterFunc(s.ctx, it.Stop)
	defer stop()
	defer it.Stop()
	sub.consuming.Store(true)
	log.Info("events: consuming", "consumer", c.CachedInfo().Name)
	if !sub.consumed.Swap(true) && int(s.nReady.Add(1)) == len(s.subs) {
		close(s.ready)
	}
	for {
		m, err := it.Next()
		switch {
		case err == nil:
			s.handle(sub, m, log)
		case s.ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("events: consume %s: %w", sub.Type, err)
		default:
			// Missed heartbeats while the server is away: the iterator
			// keeps pulling once it is back.
			log.Debug("events: consume", "err", err)
		}
	}
}

// handle applies one delivered event and answers the stream.
func (s *Subscriber) handle(sub *subscription, m jetstream.Msg, log *slog.Logger) {
	delivered := uint64(1)
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	if delivered > 1 {
		sub.redelivered.Add(1)
	}
	var ev svc.Event
	err := json.Unmarshal(m.Data(), &ev)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: message on %s: %v", svc.ErrBadEvent, m.Subject(), err)
	case ev.ID == "" || ev.Type != sub.Type:
		err = fmt.Errorf("%w: message on %s carries event %q of type %q", svc.ErrBadEvent, m.Subject(), ev.ID, ev.Type)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandlerTimeout)
		err = sub.Handle(ctx, ev)
		cancel()
	}
	switch {
	case err == nil:
		// A confirmed ack, so that an ack lost on the way is known; the
		// event is delivered again anyway, and applied once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		aerr := m.DoubleAck(ctx)
		cancel()
		if aerr != nil {
			log.Warn("events: ack; the event will be delivered again and found applied", "id", ev.ID, "err", aerr)
		}
		sub.handled.Add(1)
	case errors.Is(err, svc.ErrBadEvent):
		log.Error("events: dropped an event that can never be applied", "id", ev.ID, "err", err)
		if terr := m.Term(); terr != nil {
			log.Warn("events: term", "id", ev.ID, "err", terr)
		}
		sub.rejected.Add(1)
	default:
		delay := s.backoff(delivered)
		log.Warn("events: handler failed; the event will be delivered again", "id", ev.ID, "try", delivered, "retry_in", delay, "err", err)
		if nerr := m.NakWithDelay(delay); nerr != nil {
			log.Warn("events: nak", "id", ev.ID, "err", nerr)
		}
		sub.retried.Add(1)
	}
}

// SubscriptionStatus is one subscription's figures in SubscriberStatus.
type SubscriptionStatus struct {
	Type string `json:"type"`
	// Consuming says its consumer exists and is being fetched from.
	Consuming bool `json:"consuming"`
	// Handled counts events acked after their handler returned, Retried
	// the failures left to be delivered again, Rejected the bad events
	// dropped, Redelivered the deliveries that were not an event's first.
	Handled     int64 `json:"handled"`
	Retried     int64 `json:"retried"`
	Rejected    int64 `json:"rejected"`
	Redelivered int64 `json:"redelivered"`
}

// SubscriberStatus is a subscriber's part of its node's /status.
type SubscriberStatus struct {
	Service       string               `json:"service"`
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
}

// Status returns the subscriber's figures.
func (s *Subscriber) Status() SubscriberStatus {
	st := SubscriberStatus{Service: s.cfg.Service}
	for _, sub := range s.subs {
		st.Subscriptions = append(st.Subscriptions, SubscriptionStatus{Type: sub.Type, Consuming: sub.consuming.Load(),
			Handled: sub.handled.Load(), Retried: sub.retried.Load(), Rejected: sub.rejected.Load(), Redelivered: sub.redelivered.Load()})
	}
	return st
}
