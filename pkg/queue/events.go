package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Events between services are JetStream messages on one stream:
//
//	stream   EVENTS, subjects events.>, limits policy (kept for MaxAge)
//	subject  events.<type>          (events.post.published, events.badge.granted)
//	header   Nats-Msg-Id            the deduplication key: the event id
//	header   Event-Id               the event id the consumer sees
//	body     the event as JSON      (pkg/app/svc.Event)
//
// Unlike jobs, an event has any number of consumers: "post published"
// goes to search and to notifications. So the stream is not a work queue
// (which allows one consumer per subject) but keeps each event for MaxAge,
// and every (service, type) has its own durable pull consumer,
// "<service>--<type with dots as underscores>", which the service's
// instances share: each event is handed to one instance of each consuming
// service. docs/events.md.

// HeaderEventID carries the event id on an event message.
const HeaderEventID = "Event-Id"

// ErrBadEventType: an event type or a service name cannot be a subject
// token or part of a consumer name.
var ErrBadEventType = errors.New("bad event type or service name")

// EventsConfig configures the stream of events and its consumers.
type EventsConfig struct {
	// Stream is the stream's name. Default "EVENTS".
	Stream string
	// Servers returns the number of NATS servers in the cluster now; the
	// stream gets Replicas(Servers()) replicas, raised by Ensure as the
	// cluster grows. Nil means 1.
	Servers func() int
	// MaxAge is how long the stream keeps an event. Default 7 days: a
	// consuming service may be down that long without missing an event;
	// longer costs disk (an event is a few hundred bytes).
	MaxAge time.Duration
	// Duplicates is the window in which a publish with an event id seen
	// before is dropped. Default 10m, as for jobs: a publisher retries
	// within seconds; a republish after the window is caught by the
	// consumers' applied ids. At least 100ms (nats-server's minimum).
	Duplicates time.Duration
	// AckWait is how long a delivered event may go unanswered before it is
	// delivered again (a consumer that died). It must exceed a handler's
	// timeout. Default 60s.
	AckWait time.Duration
	// MaxAckPending bounds the events of one consumer handed out and not
	// yet answered, across its instances. Default 1000.
	MaxAckPending int
	// AttemptTimeout bounds one request to JetStream (a publish, a stream
	// or consumer lookup): during an election a request gets no answer,
	// only a timeout. Default 2s.
	AttemptTimeout time.Duration
	// Logger receives stream changes; nil discards them.
	Logger *slog.Logger
}

// DefaultEventsConfig returns the defaults.
func DefaultEventsConfig() EventsConfig {
	return EventsConfig{
		Stream:         "EVENTS",
		MaxAge:         7 * 24 * time.Hour,
		Duplicates:     10 * time.Minute,
		AckWait:        60 * time.Second,
		MaxAckPending:  1000,
		AttemptTimeout: 2 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c *EventsConfig) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("queue: events: Stream must be set")
	case c.Duplicates < 100*time.Millisecond:
		return fmt.Errorf("queue: events: Duplicates %v must be at least 100ms", c.Duplicates)
	case c.MaxAge < c.Duplicates:
		return fmt.Errorf("queue: events: MaxAge %v must be at least Duplicates %v", c.MaxAge, c.Duplicates)
	case c.AckWait < time.Second:
		return fmt.Errorf("queue: events: AckWait %v must be at least 1s", c.AckWait)
	case c.MaxAckPending < 1:
		return fmt.Errorf("queue: events: MaxAckPending %d must be at least 1", c.MaxAckPending)
	case c.AttemptTimeout <= 0:
		return errors.New("queue: events: AttemptTimeout must be positive")
	}
	return nil
}

// validEventType reports whether typ is 1 to 64 bytes of dot-separated
// non-empty tokens of a-z, 0-9, '-' and '_' (svc.ValidEventType, which
// this package may not import).
func validEventType(typ string) bool {
	if len(typ) == 0 || len(typ) > 64 {
		return false
	}
	for _, tok := range strings.Split(typ, ".") {
		if !validKind(tok) {
			return false
		}
	}
	return true
}

// EventSubject is the subject events of typ are published on.
func EventSubject(typ string) string { return "events." + typ }

// EventType returns the type of an event message from its subject.
func EventType(subject string) string {
	t, _ := strings.CutPrefix(subject, "events.")
	return t
}

// EventConsumerName is the durable consumer through which service
// consumes events of typ.
func EventConsumerName(service, typ string) string {
	return service + "--" + strings.ReplaceAll(typ, ".", "_")
}

// EventStream publishes events and gives services their consumers. Safe
// for concurrent use.
type EventStream struct {
	cfg EventsConfig
	js  jetstream.JetStream
	log *slog.Logger

	replicas *replicaGoal
}

// NewEventStream returns an EventStream over js. It creates nothing until
// Ensure, the first Publish or the first Consumer.
func NewEventStream(js jetstream.JetStream, cfg EventsConfig) (*EventStream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &EventStream{cfg: cfg, js: js, log: discardLogger(cfg.Logger), replicas: &replicaGoal{servers: cfg.Servers}}, nil
}

// Config returns the configuration the stream runs with.
func (s *EventStream) Config() EventsConfig { return s.cfg }

// Ensure creates the stream, or raises its replicas to
// Replicas(Servers()) when the cluster has grown. It is cheap when nothing
// changed (no request at all).
func (s *EventStream) Ensure(ctx context.Context) error {
	want, todo := s.replicas.pending()
	if !todo {
		return nil
	}
	sc := jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "scalestack events between services, a durable consumer per (service, type) (pkg/queue/events.go)",
		Subjects:    []string{"events.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    want,
		MaxAge:      s.cfg.MaxAge,
		Duplicates:  s.cfg.Duplicates,
	}
	if err := ensureStream(ctx, s.js, sc, s.cfg.AttemptTimeout, s.log); err != nil {
		return err
	}
	s.replicas.ensured(want)
	return nil
}

// Publish stores an event of typ with id and body (the event as JSON) and
// returns once JetStream has acknowledged it (durably, on a quorum of
// replicas). It makes one attempt, bounded by AttemptTimeout: the caller,
// an outbox publisher, retries later from its outbox. A failure matches
// ErrUnavailable; the event was possibly stored, and publishing it again
// with the same id is safe within the Duplicates window. duplicate
// reports that the stream had the id already.
func (s *EventStream) Publish(ctx context.Context, typ, id string, body []byte) (duplicate bool, err error) {
	if !validEventType(typ) {
		return false, fmt.Errorf("queue: publish event %q: %w", typ, ErrBadEventType)
	}
	if id == "" {
		return false, errors.New("queue: publish event: empty id")
	}
	if err := s.Ensure(ctx); err != nil {
		return false, fmt.Errorf("queue: publish event %s %s: %w (%v)", typ, id, ErrUnavailable, err)
	}
	msg := nats.NewMsg(EventSubject(typ))
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(HeaderEventID, id)
	msg.Data = body
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(actx, msg)
	if err != nil {
		return false, fmt.Errorf("queue: publish event %s %s: %w (%v)", typ, id, ErrUnavailable, err)
	}
	return ack.Duplicate, nil
}

// Consumer creates or updates, and returns, the durable consumer through
// which service consumes events of typ. A consumer created after events
// were published is handed every event the stream still keeps.
func (s *EventStream) Consumer(ctx context.Context, service, typ string) (jetstream.Consumer, error) {
	if !validKind(service) || !validEventType(typ) {
		return nil, fmt.Errorf("queue: consumer of %q for %q: %w", typ, service, ErrBadEventType)
	}
	if err := s.Ensure(ctx); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	c, err := s.js.CreateOrUpdateConsumer(actx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       EventConsumerName(service, typ),
		Description:   "events " + typ + " for the " + service + " service",
		FilterSubject: EventSubject(typ),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1, // an event is retried until applied; a bad one is terminated by its consumer
		MaxAckPending: s.cfg.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer of %s for %s: %w", typ, service, err)
	}
	return c, nil
}
