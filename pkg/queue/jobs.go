package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/settings"
)

// Jobs are JetStream messages on a work-queue stream:
//
//	subject  jobs.work.<kind>   (dead letters: jobs.dead.<kind>)
//	header   Nats-Msg-Id        the deduplication key (the job id on publish)
//	header   Job-Id             the job id the handler sees
//	body     the job's payload
//
// Each kind has its own durable pull consumer ("worker-<kind>"), shared by
// every worker node: the stream keeps a message until that consumer acks it
// (WorkQueuePolicy), and the consumer hands each message to one worker at a
// time. One consumer per kind, rather than one for all, because the server
// then counts depth, in-flight and redeliveries per kind (node jobs stats),
// a slow kind (thumbnails) gets its own ack wait, and a backlog of one kind
// does not sit in front of the others in one delivery order.

// Headers of a job message.
const (
	HeaderJobID = "Job-Id"
	// HeaderTraceparent is the W3C traceparent of the request that
	// published the job (Publish takes it from its context), so that the
	// worker logs the job under the request's trace id. NATS header names
	// are case-sensitive; this is the spec's spelling.
	HeaderTraceparent = "traceparent"
	// HeaderError, HeaderDeliveries and HeaderDeadAt are set on a dead letter:
	// the last handler error, how often it was delivered, and when it died.
	HeaderError      = "Job-Error"
	HeaderDeliveries = "Job-Deliveries"
	HeaderDeadAt     = "Job-Dead-At"
)

// Sentinel errors of the job queue.
var (
	// ErrUnavailable: JetStream did not take a publish within
	// JobsConfig.PublishTimeout (no NATS server reachable, or an election
	// that lasted longer). The job was possibly stored; publishing it again
	// with the same id is safe within the Duplicates window.
	ErrUnavailable = errors.New("job queue unavailable")
	// ErrBadKind: a kind is empty or has characters other than a-z, 0-9, '-'
	// and '_' (it becomes a subject token and a consumer name).
	ErrBadKind = errors.New("bad job kind")
	// ErrNotDead: no dead letter has the id given to Retry.
	ErrNotDead = errors.New("no dead job with that id")
)

// validKind reports whether kind is 1 to 64 of a-z, 0-9, '-' and '_'. A
// loop, not a regexp, since every publish checks it.
func validKind(kind string) bool {
	if len(kind) == 0 || len(kind) > 64 {
		return false
	}
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// JobsConfig configures the job streams and consumers.
type JobsConfig struct {
	// Stream is the work-queue stream's name. Default "JOBS".
	Stream string
	// DeadStream is the dead-letter stream's name. Default "JOBS_DEAD".
	DeadStream string
	// Kinds are the job kinds that get a consumer in EnsureConsumers.
	// Publishing works for any valid kind.
	Kinds []string
	// Servers returns the number of NATS servers in the cluster now; the
	// streams get Replicas(Servers()) replicas and are scaled up by Ensure
	// when it grows. Nil means 1.
	Servers func() int
	// MaxDeliver is how often a job is tried before it is dead. Default 5.
	MaxDeliver int
	// AckWait is how long a delivered job may go unanswered before the
	// server gives it to another worker (a worker that died). It must
	// exceed the worker's per-job timeout. Default 60s: longer delays the
	// retry of a crashed worker's jobs, shorter risks running a slow job
	// twice at once.
	AckWait time.Duration
	// KindAckWait overrides AckWait for some kinds.
	KindAckWait map[string]time.Duration
	// BackoffBase is the delay before the second try of a failed job; each
	// further try waits twice as long, up to BackoffMax. Defaults 1s, 1m.
	BackoffBase, BackoffMax time.Duration
	// Duplicates is the window in which a publish with a Nats-Msg-Id seen
	// before is dropped. Default 10m: a publisher retries within seconds;
	// a longer window costs server memory per message id.
	Duplicates time.Duration
	// MaxAckPending bounds the jobs of one kind handed out and not yet
	// answered, across all workers. Default 1000.
	MaxAckPending int
	// PublishTimeout bounds Publish, all its attempts included. Default 10s:
	// it covers a NATS leader election after a crash (4-9s).
	PublishTimeout time.Duration
	// AttemptTimeout bounds one publish attempt (a JetStream request gets
	// no answer during an election, only a timeout). Default 2s.
	AttemptTimeout time.Duration
	// Logger receives retries and stream changes; nil discards them.
	Logger *slog.Logger
}

// DefaultJobsConfig returns the defaults.
func DefaultJobsConfig() JobsConfig {
	return JobsConfig{
		Stream:         "JOBS",
		DeadStream:     "JOBS_DEAD",
		MaxDeliver:     5,
		AckWait:        60 * time.Second,
		BackoffBase:    time.Second,
		BackoffMax:     time.Minute,
		Duplicates:     10 * time.Minute,
		MaxAckPending:  1000,
		PublishTimeout: 10 * time.Second,
		AttemptTimeout: 2 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c *JobsConfig) Validate() error {
	switch {
	case c.Stream == "" || c.DeadStream == "" || c.Stream == c.DeadStream:
		return fmt.Errorf("queue: jobs: Stream %q and DeadStream %q must be set and differ", c.Stream, c.DeadStream)
	case c.MaxDeliver < 1:
		return settings.Errorf("queue: jobs", "MaxDeliver", "%d must be at least 1", c.MaxDeliver)
	case c.AckWait < time.Second:
		return fmt.Errorf("queue: jobs: AckWait %v must be at least 1s", c.AckWait)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return settings.Errorf("queue: jobs", "BackoffBase", "%v must be positive and at most BackoffMax %v", c.BackoffBase, c.BackoffMax)
	case c.Duplicates < time.Second:
		return fmt.Errorf("queue: jobs: Duplicates %v must be at least 1s", c.Duplicates)
	case c.MaxAckPending < 1:
		return fmt.Errorf("queue: jobs: MaxAckPending %d must be at least 1", c.MaxAckPending)
	case c.PublishTimeout <= 0 || c.AttemptTimeout <= 0:
		return errors.New("queue: jobs: PublishTimeout and AttemptTimeout must be positive")
	}
	for _, k := range c.Kinds {
		if !validKind(k) {
			return fmt.Errorf("queue: jobs: Kinds: %q: %w", k, ErrBadKind)
		}
	}
	for k, d := range c.KindAckWait {
		if d < time.Second {
			return fmt.Errorf("queue: jobs: KindAckWait[%s] %v must be at least 1s", k, d)
		}
	}
	return nil
}

// JobQueue publishes jobs, and gives workers the consumers, dead letters
// and figures of the job streams. Safe for concurrent use.
type JobQueue struct {
	cfg JobsConfig
	js  jetstream.JetStream
	log *slog.Logger

	replicas *replicaGoal
}

// NewJobQueue returns a JobQueue over js. It creates nothing until Ensure or
// the first Publish.
func NewJobQueue(js jetstream.JetStream, cfg JobsConfig) (*JobQueue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &JobQueue{cfg: cfg, js: js, log: discardLogger(cfg.Logger), replicas: &replicaGoal{servers: cfg.Servers}}, nil
}

// Config returns the configuration the queue runs with.
func (q *JobQueue) Config() JobsConfig { return q.cfg }

// WorkSubject is the subject jobs of kind are published on.
func (q *JobQueue) WorkSubject(kind string) string { return "jobs.work." + kind }

// DeadSubject is the subject dead jobs of kind are kept on.
func (q *JobQueue) DeadSubject(kind string) string { return "jobs.dead." + kind }

// ConsumerName is the durable consumer of kind.
func ConsumerName(kind string) string { return "worker-" + kind }

// ensured reports whether Ensure has nothing to do.
func (q *JobQueue) ensured() bool {
	_, todo := q.replicas.pending()
	return !todo
}

// Ensure creates the work and dead-letter streams, or raises their replicas
// to Replicas(Servers()) when the cluster has grown, and creates or updates
// the consumer of every configured kind. It is cheap when nothing changed
// (one stream info request) and is meant to be called again on membership
// changes or a timer. Each request is bounded by AttemptTimeout; ctx bounds
// the whole.
func (q *JobQueue) Ensure(ctx context.Context) error {
	want, todo := q.replicas.pending()
	if !todo {
		return nil
	}
	work := jetstream.StreamConfig{
		Name:        q.cfg.Stream,
		Description: "scalestack jobs, one consumer per kind (pkg/queue/jobs.go)",
		Subjects:    []string{"jobs.work.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    want,
		Duplicates:  q.cfg.Duplicates,
	}
	dead := jetstream.StreamConfig{
		Name:        q.cfg.DeadStream,
		Description: "scalestack dead jobs: listed by node jobs dead, replayed by node jobs retry",
		Subjects:    []string{"jobs.dead.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    want,
		Duplicates:  q.cfg.Duplicates,
	}
	for _, sc := range []jetstream.StreamConfig{work, dead} {
		if err := q.ensureStream(ctx, sc); err != nil {
			return err
		}
	}
	if err := q.EnsureConsumers(ctx); err != nil {
		return err
	}
	q.replicas.ensured(want)
	return nil
}

func (q *JobQueue) ensureStream(ctx context.Context, sc jetstream.StreamConfig) error {
	return ensureStream(ctx, q.js, sc, q.cfg.AttemptTimeout, q.log)
}

// ensureStream creates the stream sc, or raises its replicas to
// sc.Replicas when it has fewer, each request bounded by timeout.
func ensureStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, timeout time.Duration, log *slog.Logger) error {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := js.Stream(actx, sc.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(actx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("queue: create stream %s: %w", sc.Name, err)
		}
		log.Info("stream created", "stream", sc.Name, "replicas", sc.Replicas)
		return nil
	case err != nil:
		return fmt.Errorf("queue: stream %s: %w", sc.Name, err)
	}
	cur := s.CachedInfo().Config
	if cur.Replicas >= sc.Replicas {
		return nil
	}
	cur.Replicas = sc.Replicas
	if _, err := js.UpdateStream(actx, cur); err != nil {
		return fmt.Errorf("queue: scale stream %s to %d replicas: %w", sc.Name, sc.Replicas, err)
	}
	log.Info("stream scaled up", "stream", sc.Name, "replicas", sc.Replicas)
	return nil
}

// EnsureConsumers creates or updates the durable consumer of every kind in
// JobsConfig.Kinds.
func (q *JobQueue) EnsureConsumers(ctx context.Context) error {
	for _, k := range q.cfg.Kinds {
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		_, err := q.js.CreateOrUpdateConsumer(actx, q.cfg.Stream, q.consumerConfig(k))
		cancel()
		if err != nil {
			return fmt.Errorf("queue: consumer of %s: %w", k, err)
		}
	}
	return nil
}

func (q *JobQueue) consumerConfig(kind string) jetstream.ConsumerConfig {
	wait := q.cfg.AckWait
	if d, ok := q.cfg.KindAckWait[kind]; ok {
		wait = d
	}
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(kind),
		Description:   "jobs of kind " + kind,
		FilterSubject: q.WorkSubject(kind),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       wait,
		MaxDeliver:    q.cfg.MaxDeliver,
		MaxAckPending: q.cfg.MaxAckPending,
	}
}

// Consumer returns the durable consumer of kind, which Ensure must have
// created.
func (q *JobQueue) Consumer(ctx context.Context, kind string) (jetstream.Consumer, error) {
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	defer cancel()
	c, err := q.js.Consumer(actx, q.cfg.Stream, ConsumerName(kind))
	if err != nil {
		return nil, fmt.Errorf("queue: consumer of %s: %w", kind, err)
	}
	return c, nil
}

// Publish stores a job of kind with id and payload, and returns once
// JetStream has acknowledged it (durably, on a quorum of replicas). The
// stream drops a second publish of the same id within the Duplicates
// window, so Publish retries freely with the same id while NATS is
// unreachable or electing, until PublishTimeout, and then fails with
// ErrUnavailable. duplicate reports that the job was stored before. A span
// in ctx (tracectx) goes with the job as its traceparent.
func (q *JobQueue) Publish(ctx context.Context, kind, id string, payload []byte) (duplicate bool, err error) {
	if !validKind(kind) {
		return false, fmt.Errorf("queue: publish %q: %w", kind, ErrBadKind)
	}
	if id == "" {
		return false, errors.New("queue: publish: empty job id")
	}
	msg := nats.NewMsg(q.WorkSubject(kind))
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(HeaderJobID, id)
	if tp := tracectx.Traceparent(ctx); tp != "" {
		msg.Header.Set(HeaderTraceparent, tp)
	}
	msg.Data = payload
	return q.publish(ctx, msg)
}

func (q *JobQueue) publish(ctx context.Context, msg *nats.Msg) (bool, error) {
	// The common case first, with one context: the streams are there and
	// the first attempt is stored. Only a failure pays for the retry loop.
	deadline := time.Now().Add(q.cfg.PublishTimeout)
	if q.ensured() {
		actx, acancel := context.WithTimeout(ctx, min(q.cfg.AttemptTimeout, q.cfg.PublishTimeout))
		ack, err := q.js.PublishMsg(actx, msg)
		acancel()
		if err == nil {
			return ack.Duplicate, nil
		}
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var last error
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err := q.Ensure(ctx); err != nil {
			last = err
		} else {
			actx, acancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
			ack, err := q.js.PublishMsg(actx, msg)
			acancel()
			if err == nil {
				return ack.Duplicate, nil
			}
			last = err
		}
		if attempt == 1 || attempt%10 == 0 {
			q.log.Warn("job publish failed, retrying with the same id", "subject", msg.Subject,
				"id", msg.Header.Get(jetstream.MsgIDHeader), "attempt", attempt, "err", last)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("queue: publish %s %s: %w after %d attempts (last error: %v)",
				msg.Subject, msg.Header.Get(jetstream.MsgIDHeader), ErrUnavailable, attempt, last)
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// Backoff is the delay before redelivering a job that failed on its
// delivered-th delivery: BackoffBase doubled per failure, at most
// BackoffMax.
func (q *JobQueue) Backoff(delivered uint64) time.Duration {
	d := q.cfg.BackoffBase
	for i := uint64(1); i < delivered && d < q.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, q.cfg.BackoffMax)
}

// Kind returns the kind of a job message from its subject.
func Kind(subject string) string {
	if k, ok := strings.CutPrefix(subject, "jobs.work."); ok {
		return k
	}
	k, _ := strings.CutPrefix(subject, "jobs.dead.")
	return k
}

// JobID returns the job id of a job message.
func JobID(h nats.Header) string {
	if id := h.Get(HeaderJobID); id != "" {
		return id
	}
	return h.Get(jetstream.MsgIDHeader)
}

// Bury moves a job that failed its last try to the dead-letter stream and
// terminates it in the work stream. The dead letter is published with the
// job id as its Nats-Msg-Id, so a worker that dies between the two steps
// and a retry that buries the job again, or the move that the server's
// MAX_DELIVERIES advisory then causes (WatchMaxDeliveries), leave one dead
// letter.
func (q *JobQueue) Bury(ctx context.Context, m jetstream.Msg, cause error) error {
	kind := Kind(m.Subject())
	id := JobID(m.Headers())
	var delivered uint64
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	dm := deadLetter(kind, id, m.Headers().Get(jetstream.MsgIDHeader), cause, delivered, m.Data())
	if _, err := q.publish(ctx, dm); err != nil {
		return fmt.Errorf("queue: bury %s %s: %w", kind, id, err)
	}
	if err := m.Term(); err != nil {
		return fmt.Errorf("queue: bury %s %s: term: %w", kind, id, err)
	}
	q.log.Warn("job is dead", "kind", kind, "id", id, "err", cause)
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// DeadJob is a job in the dead-letter stream.
type DeadJob struct {
	Seq        uint64    `json:"seq"`
	Kind       string    `json:"kind"`
	ID         string    `json:"id"`
	Error      string    `json:"error"`
	Deliveries int       `json:"deliveries"`
	DeadAt     time.Time `json:"dead_at"`
	Payload    []byte    `json:"payload"`
}

// Dead lists the dead jobs, oldest first, at most limit (0: all).
func (q *JobQueue) Dead(ctx context.Context, limit int) ([]DeadJob, error) {
	if err := q.Ensure(ctx); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	s, err := q.js.Stream(actx, q.cfg.DeadStream)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("queue: dead: %w", err)
	}
	st := s.CachedInfo().State
	var out []DeadJob
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		if limit > 0 && len(out) == limit {
			break
		}
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		m, err := s.GetMsg(actx, seq)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed and deleted
		}
		if err != nil {
			return out, fmt.Errorf("queue: dead: get %d: %w", seq, err)
		}
		out = append(out, deadJob(m))
	}
	return out, nil
}

func deadJob(m *jetstream.RawStreamMsg) DeadJob {
	d := DeadJob{Seq: m.Sequence, Kind: Kind(m.Subject), ID: JobID(m.Header),
		Error: m.Header.Get(HeaderError), Payload: m.Data}
	d.Deliveries, _ = strconv.Atoi(m.Header.Get(HeaderDeliveries))
	d.DeadAt, _ = time.Parse(time.RFC3339, m.Header.Get(HeaderDeadAt))
	return d
}

// Retry publishes dead jobs again to the work stream, with their job id and
// payload, and removes them from the dead-letter stream: the one with job
// id, or every one when id is "". It returns how many were replayed.
//
// The replay's Nats-Msg-Id is the job id with the dead letter's sequence,
// since the original id may still be in the Duplicates window and would
// make the stream drop the replay. Handlers are idempotent by job id, so a
// job whose first run had partly happened runs to one effect.
func (q *JobQueue) Retry(ctx context.Context, id string) (int, error) {
	dead, err := q.Dead(ctx, 0)
	if err != nil {
		return 0, err
	}
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	s, err := q.js.Stream(actx, q.cfg.DeadStream)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("queue: retry: %w", err)
	}
	n := 0
	for _, d := range dead {
		if id != "" && d.ID != id {
			continue
		}
		msg := nats.NewMsg(q.WorkSubject(d.Kind))
		msg.Header.Set(jetstream.MsgIDHeader, d.ID+"/replay/"+strconv.FormatUint(d.Seq, 10))
		msg.Header.Set(HeaderJobID, d.ID)
		msg.Data = d.Payload
		if _, err := q.publish(ctx, msg); err != nil {
			return n, fmt.Errorf("queue: retry %s: %w", d.ID, err)
		}
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		err := s.DeleteMsg(actx, d.Seq)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("queue: retry %s: remove dead letter: %w", d.ID, err)
		}
		q.log.Info("dead job replayed", "kind", d.Kind, "id", d.ID)
		n++
	}
	if id != "" && n == 0 {
		return 0, fmt.Errorf("queue: retry %s: %w", id, ErrNotDead)
	}
	return n, nil
}

// KindStats are the figures of one job kind.
type KindStats struct {
	Kind string `json:"kind"`
	// Depth is how many jobs are waiting in the stream (delivered and
	// unacknowledged ones included, since a work queue keeps a job until
	// it is acked).
	Depth uint64 `json:"depth"`
	// InFlight is how many jobs are delivered and not yet acked.
	InFlight int `json:"in_flight"`
	// Redelivered is how many of those were delivered more than once.
	Redelivered int `json:"redelivered"`
	// Delivered counts deliveries since the consumer was created.
	Delivered uint64 `json:"delivered"`
	// Rate is deliveries per second over the sampling interval of Stats.
	Rate float64 `json:"rate"`
	// Dead is how many jobs of the kind are in the dead-letter stream.
	Dead uint64 `json:"dead"`
}

// Stats returns the figures of every kind that has a consumer. With
// interval > 0 it samples twice, interval apart, to measure the rate.
func (q *JobQueue) Stats(ctx context.Context, interval time.Duration) ([]KindStats, error) {
	first, err := q.sample(ctx)
	if err != nil || interval <= 0 {
		return first, err
	}
	start := time.Now()
	t := time.NewTimer(interval)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	case <-t.C:
	}
	second, err := q.sample(ctx)
	if err != nil {
		return nil, err
	}
	el := time.Since(start).Seconds()
	for i := range second {
		for _, f := range first {
			if f.Kind == second[i].Kind && second[i].Delivered >= f.Delivered {
				second[i].Rate = float64(second[i].Delivered-f.Delivered) / el
			}
		}
	}
	return second, nil
}

func (q *JobQueue) sample(ctx context.Context) ([]KindStats, error) {
	if err := q.Ensure(ctx); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	defer cancel()
	work, err := q.js.Stream(actx, q.cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("queue: stats: %w", err)
	}
	wi, err := work.Info(actx, jetstream.WithSubjectFilter("jobs.work.>"))
	if err != nil {
		return nil, fmt.Errorf("queue: stats: %w", err)
	}
	dead, err := q.js.Stream(actx, q.cfg.DeadStream)
	if err != nil {
		return nil, fmt.Errorf("queue: stats: %w", err)
	}
	di, err := dead.Info(actx, jetstream.WithSubjectFilter("jobs.dead.>"))
	if err != nil {
		return nil, fmt.Errorf("queue: stats: %w", err)
	}
	var out []KindStats
	lister := work.ListConsumers(actx)
	for ci := range lister.Info() {
		kind, ok := strings.CutPrefix(ci.Name, "worker-")
		if !ok {
			continue
		}
		out = append(out, KindStats{
			Kind:        kind,
			Depth:       wi.State.Subjects[q.WorkSubject(kind)],
			InFlight:    ci.NumAckPending,
			Redelivered: ci.NumRedelivered,
			Delivered:   ci.Delivered.Consumer,
			Dead:        di.State.Subjects[q.DeadSubject(kind)],
		})
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("queue: stats: consumers: %w", err)
	}
	return out, nil
}
