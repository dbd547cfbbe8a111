package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The job outbox (--jobs=queue), in the store; not the folder of e-mails
// that Config.Outbox names.
//
// A job caused by a write (the welcome e-mail of a sign-up, the indexing
// of a post) is put in the store, in JobOutboxBucket, in the same
// transaction as the write: the two commit together or not at all. After
// the commit the request hands the job to the relay and answers; the relay
// publishes it to the queue in the background and deletes the entry once
// the queue has acknowledged it. So the answer never waits on the queue,
// and a job is not lost when the queue is down, when the request fails
// after its write committed (the store's answer was lost: outcome
// unknown), or when the app dies between the commit and the publish: the
// relay of every app node sweeps the outbox now and then and publishes
// what has waited there too long.
//
// So a job may be published more than once (by its request and a sweep,
// by two app nodes' sweeps). Each is published with its id as Nats-Msg-Id,
// which JetStream stores once within its Duplicates window (10 minutes),
// and every handler is idempotent by job id for what gets past it.
//
// How the job gets into the write's transaction: the handler builds its
// jobs from the value the service is about to write (causes), through the
// service's outbox hook (svc.WithOutbox), since the job names what the
// write makes (the new user's id) and that exists only inside the service
// until it commits.

// JobOutboxBucket is the store bucket of the job outbox: one entry per job
// that a write caused and the queue has not acknowledged yet, keyed by the
// job id (time-ordered, so a scan is oldest first), its value the Job as
// JSON. It is the app's, not a service's: only the relay reads it.
const JobOutboxBucket = "jobs.outbox"

// caused is the set of jobs that one service call's write causes. It is not
// safe for concurrent use: it belongs to the request making the call.
type caused struct {
	// jobs are the jobs built for the last transaction the service
	// attempted: once the call has succeeded, those that committed.
	jobs []Job
}

// causes returns ctx for the one service call whose write causes jobs,
// and the set that keeps them. build makes the jobs from the value of type
// T the service is about to write (a new user, a post as changed, a
// comment). With a queue they go into the job outbox in the write's own
// transaction; inline, nothing is added to it. Once the call has
// succeeded, hand the set to w.committed.
//
// Give the context to that call only: every write of a T made with it
// would carry the jobs.
//
// With remote services (the gateway) a write causes no job of the app's:
// the service writes the events of its change in its own outbox, in the
// change's transaction, and its consumers do what the jobs did. ctx is
// returned as it is, without the hook, so that a service running in the
// gateway's process (tests) does not hand it jobs either.
func causes[T any](w *web, ctx context.Context, build func(T) []Job) (context.Context, *caused) {
	c := &caused{}
	if w.cfg.RemoteServices() {
		return ctx, c
	}
	outbox := w.a.relay != nil
	return svc.WithOutbox(ctx, func(v T) []store.Op {
		c.jobs = build(v)
		for i := range c.jobs {
			c.jobs[i] = c.jobs[i].Traced(ctx)
		}
		if !outbox {
			return nil
		}
		ops := make([]store.Op, len(c.jobs))
		for i, j := range c.jobs {
			ops[i] = store.Put(JobOutboxBucket, j.ID, mustJSON(j))
		}
		return ops
	}), c
}

// committed hands the jobs of a write that has committed to the job
// runner: inline, it runs them now, in the request, as at stages 1-7; with
// a queue, the relay publishes them after the answer has gone.
//
// Inline jobs run even when the request's client has gone: the write they
// follow is saved, and a post must not stay out of the search index
// because its author stopped waiting. So they do not end with the
// request's context (the store client's own timeout still bounds each
// call).
func (w *web) committed(ctx context.Context, c *caused) {
	ctx = context.WithoutCancel(ctx)
	jobs := c.jobs
	c.jobs = nil
	for _, j := range jobs {
		if w.a.relay != nil {
			w.a.relay.publishSoon(j, true)
			continue
		}
		w.enqueue(ctx, j)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("app: encode %T: %v", v, err))
	}
	return b
}

// Sizes of the relay.
const (
	// relayPublishers is how many jobs the relay publishes at once after
	// their requests. A publish to an R3 stream takes 1.5-3.9 ms
	// (docs/queue.md), so four keep up with about a thousand jobs a
	// second; while the queue is down each waits out the publisher's
	// timeout, and the jobs behind them wait in the outbox for a sweep.
	relayPublishers = 4
	// relayBacklog bounds the jobs waiting for a publisher. Past it a
	// write's job waits in the outbox for a sweep, and a job no write
	// caused (a view) is dropped: the request never waits for room.
	relayBacklog = 1024
)

// relay publishes the job outbox to the queue: each job right after the
// write that committed it (publishSoon, from the request), and, in a sweep
// every JobOutboxSweep, the entries older than JobOutboxAge that nobody
// published. Its goroutines run from Open to Close.
//
// A gateway's relay (remote services) has no outbox: st is nil, nothing is
// swept, and it publishes only the jobs no write caused (views) after
// their answers.
type relay struct {
	st     store.Store // the job outbox's store; nil: none
	q      Jobs
	log    *slog.Logger
	every  time.Duration
	minAge time.Duration

	soon   chan soonJob
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// pending is the number of entries the last complete sweep counted.
	pending atomic.Int64
	// published counts the jobs the queue acknowledged (views included),
	// swept those of them a sweep published; failures counts failed
	// publishes, storeErrors failed reads and deletes of the outbox, dropped
	// the views that found the backlog full.
	published, swept, failures, storeErrors, dropped atomic.Int64
	// queueDown and storeDown are set while the last publish, or the last
	// store call, failed, so that an outage is logged when it starts and
	// when it ends rather than once per job.
	queueDown, storeDown atomic.Bool
	// undecodable is how many entries the last sweep could not decode,
	// logged when it changes.
	undecodable atomic.Int64

	pendingDesc, publishedDesc, sweptDesc, failuresDesc, storeErrorsDesc, droppedDesc *prometheus.Desc
}

// soonJob is a job for the publishers; stored says it is in the outbox.
type soonJob struct {
	job    Job
	stored bool
}

func newRelay(st store.Store, q Jobs, every, minAge time.Duration, log *slog.Logger) *relay {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("scalestack_app_outbox_"+name, help, nil, nil)
	}
	return &relay{st: st, q: q, log: log, every: every, minAge: minAge, soon: make(chan soonJob, relayBacklog),
		pendingDesc:     desc("pending", "Entries in the job outbox at the app's last sweep: jobs committed with their write and not yet acknowledged by the queue."),
		publishedDesc:   desc("published_total", "Jobs the app published and the queue acknowledged (views included)."),
		sweptDesc:       desc("swept_total", "Jobs a sweep of the outbox published: their request had not (queue down, outcome-unknown write, app died)."),
		failuresDesc:    desc("publish_failures_total", "Publishes of jobs that failed; the job stays in the outbox (a view is lost)."),
		storeErrorsDesc: desc("store_errors_total", "Failed reads and deletes of the job outbox in the store."),
		droppedDesc:     desc("dropped_total", "Views not published because the relay's backlog was full."),
	}
}

// Open starts the publishers and, with an outbox, the sweep.
func (r *relay) Open() {
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(relayPublishers)
	for range relayPublishers {
		go r.publishLoop()
	}
	if r.st != nil {
		r.wg.Add(1)
		go r.sweepLoop()
	}
}

// Close stops the relay and waits for its goroutines. Jobs not published
// yet stay in the outbox, for the sweep of any app node (this one when it
// comes back); views waiting in the backlog are lost.
func (r *relay) Close() {
	r.cancel()
	r.wg.Wait()
}

// publishSoon queues j for a publisher without waiting; stored says j is
// in the outbox.
func (r *relay) publishSoon(j Job, stored bool) {
	select {
	case r.soon <- soonJob{j, stored}:
	default:
		if !stored {
			r.dropped.Add(1)
		}
	}
}

func (r *relay) publishLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case sj := <-r.soon:
			_ = r.publish(r.ctx, sj.job, sj.stored)
		}
	}
}

// publish hands j to the queue and, once acknowledged, deletes its outbox
// entry when it has one.
func (r *relay) publish(ctx context.Context, j Job, stored bool) error {
	// The publish and the outbox delete belong to the request that caused
	// the job: under its trace.
	if sc, err := tracectx.Parse(j.Trace); err == nil {
		ctx = tracectx.NewContext(ctx, sc)
	}
	if err := r.q.Enqueue(ctx, j); err != nil {
		if ctx.Err() != nil {
			return err // closing: the entry stays for the next sweep
		}
		r.failures.Add(1)
		if !r.queueDown.Swap(true) {
			r.log.WarnContext(ctx, "app: job queue unreachable; jobs wait in the outbox until it is back", "kind", j.Kind, "id", j.ID, "err", err)
		} else {
			r.log.DebugContext(ctx, "app: job publish failed", "kind", j.Kind, "id", j.ID, "err", err)
		}
		return err
	}
	r.published.Add(1)
	if r.queueDown.Swap(false) {
		r.log.Info("app: job queue reachable again")
	}
	if !stored {
		return nil
	}
	if _, err := r.st.Txn(ctx, store.Delete(JobOutboxBucket, j.ID)); err != nil {
		// The job is queued; a later sweep publishes it again, and the
		// queue drops the duplicate.
		r.storeFailed("delete a published job from the outbox", err)
		return nil
	}
	r.storeOK()
	return nil
}

func (r *relay) storeFailed(what string, err error) {
	if errors.Is(err, context.Canceled) && r.ctx.Err() != nil {
		return
	}
	r.storeErrors.Add(1)
	if !r.storeDown.Swap(true) {
		r.log.Warn("app: job outbox: store unavailable; the relay waits for it", "op", what, "err", err)
	} else {
		r.log.Debug("app: job outbox: store call failed", "op", what, "err", err)
	}
}

func (r *relay) storeOK() {
	if r.storeDown.Swap(false) {
		r.log.Info("app: job outbox: store reachable again")
	}
}

func (r *relay) sweepLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.sweep(r.ctx)
		}
	}
}

// sweep publishes the outbox entries older than minAge, oldest first, and
// counts every entry. The first failed publish ends the publishing (the
// queue is down: the next sweep tries again) but not the count. A store
// that fails (a failover) ends the sweep; the next one starts over.
func (r *relay) sweep(ctx context.Context) {
	// The outbox is read on the primary: a replica behind it would show
	// entries already published and deleted.
	ctx = store.WithConsistency(ctx, store.Strong, 0)
	cutoff := time.Now().Add(-r.minAge)
	var pending, undecodable int64
	publishing := true
	for start := ""; ; {
		pairs, err := r.st.Scan(ctx, JobOutboxBucket, store.ScanOptions{Start: start, Limit: store.MaxScanLimit})
		if errors.Is(err, store.ErrNotFound) {
			break // no job was ever put in the outbox
		}
		if err != nil {
			r.storeFailed("sweep", err)
			return
		}
		r.storeOK()
		for _, p := range pairs {
			pending++
			if !publishing || !ids.Time(p.Key).Before(cutoff) {
				continue
			}
			var j Job
			if err := json.Unmarshal(p.Value, &j); err != nil || j.ID != p.Key {
				// Not a job as this version writes it; left for the
				// version that wrote it, never deleted unpublished.
				undecodable++
				continue
			}
			if err := r.publish(ctx, j, true); err != nil {
				publishing = false
				continue
			}
			r.swept.Add(1)
			pending--
		}
		if len(pairs) < store.MaxScanLimit {
			break
		}
		start = pairs[len(pairs)-1].Key + "\x00"
	}
	if ctx.Err() != nil {
		return
	}
	r.pending.Store(pending)
	if r.undecodable.Swap(undecodable) != undecodable && undecodable > 0 {
		r.log.Error("app: job outbox: entries that are not jobs; left in place", "count", undecodable, "bucket", JobOutboxBucket)
	}
}

// OutboxStatus is the job outbox's part of the app's /status (--jobs=queue).
type OutboxStatus struct {
	// Pending is the number of entries in the outbox at the last sweep:
	// jobs committed with their write that the queue has not acknowledged.
	Pending int64 `json:"pending"`
	// Published counts the jobs the queue acknowledged, views included.
	Published int64 `json:"published"`
	// Swept counts the jobs of Published that a sweep published.
	Swept int64 `json:"swept"`
	// PublishFailures counts failed publishes (the job stays in the outbox).
	PublishFailures int64 `json:"publish_failures"`
	// StoreErrors counts failed reads and deletes of the outbox.
	StoreErrors int64 `json:"store_errors"`
	// Dropped counts views lost because the relay's backlog was full.
	Dropped int64 `json:"dropped"`
}

func (r *relay) status() OutboxStatus {
	return OutboxStatus{Pending: r.pending.Load(), Published: r.published.Load(), Swept: r.swept.Load(),
		PublishFailures: r.failures.Load(), StoreErrors: r.storeErrors.Load(), Dropped: r.dropped.Load()}
}

// Describe implements prometheus.Collector.
func (r *relay) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{r.pendingDesc, r.publishedDesc, r.sweptDesc, r.failuresDesc, r.storeErrorsDesc, r.droppedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *relay) Collect(ch chan<- prometheus.Metric) {
	s := r.status()
	ch <- prometheus.MustNewConstMetric(r.pendingDesc, prometheus.GaugeValue, float64(s.Pending))
	for _, c := range []struct {
		d *prometheus.Desc
		v int64
	}{{r.publishedDesc, s.Published}, {r.sweptDesc, s.Swept}, {r.failuresDesc, s.PublishFailures},
		{r.storeErrorsDesc, s.StoreErrors}, {r.droppedDesc, s.Dropped}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
}
