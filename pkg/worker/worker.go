// Package worker is the worker role of stage 8: it consumes the blog's jobs
// from the JetStream work queue of pkg/queue and does them (e-mails,
// follower notifications, thumbnails, view counts, search indexing) with
// the blog's own job handlers (app.Handlers) over the store.
//
// Each job is acked only after its handler succeeded; a failed job is
// retried with exponential back-off, and after its last try it is moved to
// the dead-letter stream, from where `node jobs retry` replays it; a job
// whose last try died with its worker gets there through the server's
// MAX_DELIVERIES advisory, which every worker listens to. Every
// handler is idempotent by job id, so a job delivered twice (a worker that
// died before its ack, a lost ack) has one effect. Close stops fetching,
// finishes the jobs in hand, and hands the rest back to the queue.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/queue"
)

// Worker is the worker role.
type Worker struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	svc  app.Services
	// tier is the cache tier the services read through, nil with the
	// cache off; opened by Open, closed after the last job.
	tier     *cachetier.Tier
	handlers *app.Handlers
	mail     *mailer
	views    *viewBatcher
	metrics  *metrics

	// stopping is closed by Close: no job is taken after it.
	stopping chan struct{}
	// ctx ends start-up and the upkeep loop; jobCtx ends the jobs in hand
	// (only after StopTimeout, so that Close lets them finish).
	ctx       context.Context
	cancel    context.CancelFunc
	jobCtx    context.Context
	jobCancel context.CancelFunc
	work      chan jetstream.Msg
	done      chan struct{} // closed when run has returned

	mu     sync.Mutex
	conn   *queue.Conn
	q      *queue.JobQueue
	opened bool
	closed bool
	ready  atomic.Bool
	inHand atomic.Int64
}

// New builds a worker from cfg and deps; it connects to nothing until Open.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Store == nil && deps.Services == nil:
		return nil, fmt.Errorf("worker: %w", ErrNoStore)
	case deps.NATS == nil:
		return nil, fmt.Errorf("worker: %w", ErrNoNATS)
	}
	w := &Worker{cfg: cfg, deps: deps, log: deps.Logger, stopping: make(chan struct{}), done: make(chan struct{}),
		work: make(chan jetstream.Msg)}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	// Lines logged with a job's context carry its request's trace id.
	w.log = tracectx.WithLogger(w.log)
	if w.cfg.Outbox == "" {
		w.cfg.Outbox = filepath.Join(cfg.DataDir, "outbox")
	}
	// The blog's own service stack, as the app runs it: the worker's writes
	// (thumbnails, comment counts) invalidate the cache tier and purge the
	// edges like the app's do. Its tier's metrics are the app's to register.
	stack, err := app.NewStack(cfg.Blog, app.ServicesDeps{Store: deps.Store, Services: deps.Services,
		Purger: deps.Purger, CacheNodes: deps.CacheNodes, Logger: w.log})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.svc, w.tier = stack.Services, stack.Tier
	w.handlers = app.NewHandlers(w.svc, w.cfg.Outbox, w.log)
	w.mail = newMailer(w.cfg.Outbox, cfg.SMTP, cfg.SMTPFrom, w.log)
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("worker: metrics: %w", err)
	}
	w.metrics = m
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.jobCtx, w.jobCancel = context.WithCancel(context.Background())
	w.views = newViewBatcher(w)
	return w, nil
}

// Open starts the worker: it connects to NATS, makes sure the job streams
// and consumers exist, and starts consuming, all in the background, since a
// clustered NATS has no JetStream until its second server is up. Ready
// reports when jobs flow.
func (w *Worker) Open() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.opened || w.closed {
		return errors.New("worker: open: already opened")
	}
	if w.tier != nil {
		if err := w.tier.Open(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
	}
	w.opened = true
	go w.run()
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "outbox", w.cfg.Outbox, "smtp", w.cfg.SMTP)
	return nil
}

// Ready reports whether the worker is consuming and connected.
func (w *Worker) Ready() bool {
	if !w.ready.Load() {
		return false
	}
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	return c != nil && c.Ready()
}

// Addr returns "": the worker listens on nothing.
func (w *Worker) Addr() string { return "" }

// upkeepInterval is how often the worker re-checks the streams, to scale
// their replicas up when NATS servers have joined.
const upkeepInterval = 10 * time.Second

// run connects, consumes until Close, then stops in order: no new jobs,
// the jobs in hand finish, buffered views are written, the connection
// closes last because the acks of the jobs in hand go over it.
func (w *Worker) run() {
	defer close(w.done)
	cc := queue.DefaultClientConfig()
	cc.Servers, cc.Name, cc.Logger = w.deps.NATS, w.cfg.NodeName, w.log
	cc.Password = w.cfg.NATSPassword
	cc.TLS = w.cfg.NATSTLS
	conn, err := queue.Connect(w.ctx, cc)
	if err != nil {
		w.log.Info("worker stopped before NATS was reached", "err", err)
		return
	}
	w.mu.Lock()
	w.conn = conn
	w.mu.Unlock()
	defer conn.Close()

	jc := w.cfg.Jobs
	jc.Kinds, jc.Servers, jc.Logger = Kinds(), w.deps.NATSServers, w.log
	q, err := queue.NewJobQueue(conn.JetStream(), jc)
	if err != nil {
		w.log.Error("worker: job queue", "err", err)
		return
	}
	w.mu.Lock()
	w.q = q
	w.mu.Unlock()
	var consumers []jetstream.ConsumeContext
	for attempt := 1; ; attempt++ {
		consumers, err = w.consume(q)
		if err == nil {
			break
		}
		if attempt == 1 || attempt%10 == 0 {
			w.log.Warn("worker: cannot consume yet, retrying", "attempt", attempt, "err", err)
		}
		if !w.sleep(500 * time.Millisecond) {
			return
		}
	}
	// A job whose last try died with its worker is moved to the dead
	// letters by whichever worker the server's advisory reaches.
	stopDead, err := q.WatchMaxDeliveries(conn.NATS(), func(kind string) { w.metrics.count(kind, "dead") })
	if err != nil {
		w.log.Error("worker: watch jobs out of tries", "err", err)
		stopDead = func() {}
	}
	var pool sync.WaitGroup
	for range w.cfg.Concurrency {
		pool.Go(w.runJobs)
	}
	var batcher sync.WaitGroup
	batcher.Go(w.views.run)
	w.ready.Store(true)
	w.log.Info("worker consuming", "kinds", Kinds())

	for w.sleep(upkeepInterval) {
		if err := q.Ensure(w.ctx); err != nil {
			w.log.Warn("worker: ensure job streams", "err", err)
		}
	}

	// Shutdown order: the consumers stop fetching first (jobs already
	// buffered by nats.go are nakked by the callback, so another worker
	// gets them at once); then the pool finishes the jobs in hand within
	// StopTimeout; then the view batcher writes what it gathered; the
	// connection closes last, after the acks.
	w.ready.Store(false)
	for _, c := range consumers {
		c.Stop()
	}
	if !waitTimeout(&pool, w.cfg.StopTimeout) {
		w.log.Warn("worker: jobs still running at stop timeout; the queue redelivers them", "in_hand", w.inHand.Load())
		w.jobCancel()
		pool.Wait()
	}
	w.views.stop()
	batcher.Wait()
	stopDead()
	w.jobCancel()
}

// sleep waits d or until Close, reporting false on Close.
func (w *Worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// consume makes sure the streams exist and starts a pull consumer per kind.
// nats.go buffers up to Concurrency messages per kind; the callback hands
// each to the pool and blocks while the pool is busy.
func (w *Worker) consume(q *queue.JobQueue) ([]jetstream.ConsumeContext, error) {
	if err := q.Ensure(w.ctx); err != nil {
		return nil, err
	}
	var out []jetstream.ConsumeContext
	for _, kind := range Kinds() {
		c, err := q.Consumer(w.ctx, kind)
		if err == nil {
			var cc jetstream.ConsumeContext
			cc, err = c.Consume(w.hand, jetstream.PullMaxMessages(w.cfg.Concurrency),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
					w.log.Debug("worker: consume", "kind", kind, "err", err)
				}))
			if err == nil {
				out = append(out, cc)
				continue
			}
		}
		for _, cc := range out {
			cc.Stop()
		}
		return nil, err
	}
	return out, nil
}

// hand passes a delivered job to the pool, or back to the queue once the
// worker is stopping.
func (w *Worker) hand(m jetstream.Msg) {
	select {
	case <-w.stopping:
		m.Nak()
	default:
		select {
		case w.work <- m:
		case <-w.stopping:
			m.Nak()
		}
	}
}

// runJobs is one of the pool's goroutines. A job received from work is in
// hand and is finished even when the worker is stopping.
func (w *Worker) runJobs() {
	for {
		select {
		case <-w.stopping:
			return
		case m := <-w.work:
			w.inHand.Add(1)
			w.runJob(m)
			w.inHand.Add(-1)
		}
	}
}

func (w *Worker) runJob(m jetstream.Msg) {
	job := app.Job{Kind: queue.Kind(m.Subject()), ID: queue.JobID(m.Headers()), Payload: m.Data()}
	// The worker's span: a child of the publishing request's, or a trace
	// of its own for a job published without one. job.Trace carries it on
	// to finish's log lines and the view batcher's.
	span, _ := tracectx.Continue(m.Headers().Get(queue.HeaderTraceparent))
	job.Trace = span.String()
	// Anyone who can publish to NATS can publish a job: nothing in it is
	// believed until checked.
	if err := app.CheckJob(job); err != nil {
		w.finish(m, job, err, 0)
		return
	}
	if job.Kind == app.JobView {
		w.views.add(m, job)
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(tracectx.NewContext(w.jobCtx, span), w.cfg.JobTimeout)
	err := w.handle(ctx, job)
	cancel()
	w.finish(m, job, err, time.Since(start))
}

// handle runs the handler of job (checked by app.CheckJob): the e-mails
// from the worker's templates, everything else with the blog's handlers.
func (w *Worker) handle(ctx context.Context, job app.Job) error {
	switch job.Kind {
	case app.JobWelcome:
		var p app.WelcomePayload
		if err := json.Unmarshal(job.Payload, &p); err != nil {
			return fmt.Errorf("welcome: decode payload: %w", err)
		}
		return w.mail.send(ctx, "welcome", mail{ID: job.ID, To: p.Email, Name: p.Handle, Date: jobDate(job.ID)})
	case app.JobCommentAdded:
		if err := w.handlers.Handle(ctx, job); err != nil {
			return err
		}
		return w.commentMail(ctx, job)
	}
	return w.handlers.Handle(ctx, job)
}

// commentMail tells a post's author by e-mail of a comment by someone else.
func (w *Worker) commentMail(ctx context.Context, job app.Job) error {
	var p app.CommentPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil {
		return fmt.Errorf("comment: decode payload: %w", err)
	}
	post, err := w.svc.Posts.Get(ctx, p.PostID)
	if err != nil {
		return nil // deleted since (the handler above saw it first); nobody to tell
	}
	if post.AuthorID == p.AuthorID {
		return nil
	}
	author, err := w.svc.Accounts.User(ctx, post.AuthorID)
	if err != nil {
		return fmt.Errorf("comment mail: author: %w", err)
	}
	return w.mail.send(ctx, "comment", mail{ID: job.ID, To: author.Email, Name: author.Handle,
		Date: jobDate(job.ID), Actor: p.Author, Title: post.Title, PostID: post.ID})
}

// finish answers the queue for a job: ack on success; on failure a nak
// with back-off, or, after the last try (or for a job that can never
// succeed: one no handler knows, or a bad one), the dead-letter stream.
func (w *Worker) finish(m jetstream.Msg, job app.Job, err error, took time.Duration) {
	w.metrics.duration.WithLabelValues(job.Kind).Observe(took.Seconds())
	ctx := context.Background()
	if span, perr := tracectx.Parse(job.Trace); perr == nil {
		ctx = tracectx.NewContext(ctx, span)
	}
	if err == nil {
		if aerr := m.Ack(); aerr != nil {
			w.log.WarnContext(ctx, "worker: ack", "kind", job.Kind, "id", job.ID, "err", aerr)
		}
		w.metrics.count(job.Kind, "done")
		// One line per job, under the trace of the request that caused it;
		// views, one per page read, only at debug.
		level := slog.LevelInfo
		if job.Kind == app.JobView {
			level = slog.LevelDebug
		}
		w.log.Log(ctx, level, "job done", "kind", job.Kind, "id", job.ID, "took", took)
		return
	}
	w.metrics.count(job.Kind, "failed")
	var delivered uint64 = 1
	if md, merr := m.Metadata(); merr == nil {
		delivered = md.NumDelivered
	}
	q := w.queue()
	permanent := errors.Is(err, app.ErrUnknownJob) || errors.Is(err, app.ErrBadJob)
	if permanent {
		w.log.WarnContext(ctx, "worker: refused a job that can never succeed; moving it to the dead-letter stream", "kind", job.Kind, "id", job.ID, "err", err)
	}
	if permanent || delivered >= uint64(q.Config().MaxDeliver) {
		bctx, cancel := context.WithTimeout(ctx, q.Config().PublishTimeout)
		berr := q.Bury(bctx, m, err)
		cancel()
		if berr != nil {
			// Left unacked: when its ack wait ends the consumer has no try
			// left, and the MAX_DELIVERIES advisory makes a worker move
			// it (queue.JobQueue.WatchMaxDeliveries).
			w.log.ErrorContext(ctx, "worker: bury", "kind", job.Kind, "id", job.ID, "err", berr)
			return
		}
		w.metrics.count(job.Kind, "dead")
		return
	}
	delay := q.Backoff(delivered)
	w.log.WarnContext(ctx, "job failed, will retry", "kind", job.Kind, "id", job.ID, "try", delivered, "retry_in", delay, "err", err)
	if nerr := m.NakWithDelay(delay); nerr != nil {
		w.log.WarnContext(ctx, "worker: nak", "kind", job.Kind, "id", job.ID, "err", nerr)
	}
	w.metrics.count(job.Kind, "retried")
}

func (w *Worker) queue() *queue.JobQueue {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.q
}

// Close stops taking jobs, finishes the jobs in hand (up to StopTimeout),
// closes the NATS connection, then the cache tier (after the last job,
// which invalidates through it).
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	opened := w.opened
	w.mu.Unlock()
	close(w.stopping)
	w.cancel()
	if opened {
		<-w.done
	}
	w.jobCancel()
	var err error
	if w.tier != nil && opened {
		if terr := w.tier.Close(); terr != nil {
			err = fmt.Errorf("worker: close cache tier: %w", terr)
		}
	}
	w.log.Info("worker stopped")
	return err
}

// Status is the worker's live figures for the node's /status.
type Status struct {
	Ready       bool  `json:"ready"`
	Concurrency int   `json:"concurrency"`
	InHand      int64 `json:"in_hand"`
	// ViewsHeld is how many view jobs the batcher has taken and not yet
	// written (and acked): the views of the current ViewWindow.
	ViewsHeld int64            `json:"views_held"`
	Outbox    string           `json:"outbox"`
	SMTP      string           `json:"smtp,omitempty"`
	Jobs      map[string]int64 `json:"jobs"` // "<kind> <outcome>" -> count
	NATS      any              `json:"nats,omitempty"`
}

// Status returns a Status.
func (w *Worker) Status() any {
	st := Status{Ready: w.Ready(), Concurrency: w.cfg.Concurrency, InHand: w.inHand.Load(),
		ViewsHeld: w.views.held.Load(), Outbox: w.cfg.Outbox, SMTP: w.cfg.SMTP, Jobs: w.metrics.snapshot()}
	w.mu.Lock()
	if w.conn != nil {
		st.NATS = w.conn.Status()
	}
	w.mu.Unlock()
	return st
}

// Counts returns how many jobs of kind ended with outcome ("done",
// "failed", "retried", "dead") in this worker.
func (w *Worker) Counts(kind, outcome string) int64 {
	return w.metrics.snapshot()[kind+" "+outcome]
}

func jobDate(id string) string {
	return idTime(id).UTC().Format(time.RFC1123Z)
}

// metrics are the worker's outcome counters and duration histogram, kept
// also as plain counts for Status.
type metrics struct {
	jobs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	mu       sync.Mutex
	counts   map[string]int64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "scalestack", Subsystem: "worker", Name: "jobs_total",
			Help: "Jobs by kind and outcome: done, failed (a try failed), retried, dead.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "scalestack", Subsystem: "worker", Name: "job_duration_seconds",
			Help:    "Time a job's handler took, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
		counts: map[string]int64{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.jobs, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) count(kind, outcome string) {
	m.jobs.WithLabelValues(kind, outcome).Inc()
	m.mu.Lock()
	m.counts[kind+" "+outcome]++
	m.mu.Unlock()
}

func (m *metrics) snapshot() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}
