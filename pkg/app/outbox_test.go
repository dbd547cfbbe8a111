package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/store"
)

// gatedQueue is a job queue that takes nothing until it is opened, as the
// JOBS stream without a leader during a failover: Enqueue waits for the
// gate, and gives up after queueHold as the real publisher does after its
// publish timeout.
type gatedQueue struct {
	gate     chan struct{}
	openOnce sync.Once
	mu       sync.Mutex
	got      []app.Job
}

// queueHold is how long a publish to a closed gatedQueue waits before it
// fails. A request that waited for the queue would take at least as long.
const queueHold = 3 * time.Second

func newGatedQueue() *gatedQueue { return &gatedQueue{gate: make(chan struct{})} }

func (q *gatedQueue) Enqueue(ctx context.Context, j app.Job) error {
	t := time.NewTimer(queueHold)
	defer t.Stop()
	select {
	case <-q.gate:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("gated queue: no answer")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.got = append(q.got, j)
	return nil
}

func (q *gatedQueue) open() { q.openOnce.Do(func() { close(q.gate) }) }

// ids returns the distinct ids of the jobs taken, of the given kinds.
func (q *gatedQueue) ids(kinds ...string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, j := range q.got {
		if slices.Contains(kinds, j.Kind) && !slices.Contains(out, j.ID) {
			out = append(out, j.ID)
		}
	}
	slices.Sort(out)
	return out
}

// openQueueStack opens an app with --jobs=queue over st, publishing to q,
// on its own listener (the relay runs from Open to Close).
func openQueueStack(tb testing.TB, st store.Store, q app.Jobs, edit ...func(*app.Config, *app.Deps)) *stack {
	tb.Helper()
	cfg := app.DefaultConfig()
	cfg.Addr, cfg.NodeName, cfg.DataDir = "127.0.0.1:0", "app-test", tb.TempDir()
	cfg.BcryptCost = bcrypt.MinCost
	cfg.Jobs = "queue"
	cfg.JobOutboxSweep, cfg.JobOutboxAge = 50*time.Millisecond, 300*time.Millisecond
	deps := app.Deps{Store: st, JobQueue: q, Logger: newLogger(tb)}
	for _, e := range edit {
		e(&cfg, &deps)
	}
	a, err := app.New(cfg, deps)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	if err := a.Open(); err != nil {
		tb.Fatalf("app Open: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return &stack{App: a, URL: "http://" + a.Addr(), Store: st, Outbox: filepath.Join(cfg.DataDir, "outbox")}
}

// outboxJobs returns the jobs in the job outbox, read on the primary.
func outboxJobs(tb testing.TB, st store.Store) []app.Job {
	tb.Helper()
	ctx := store.WithConsistency(context.Background(), store.Strong, 0)
	pairs, err := st.Scan(ctx, app.JobOutboxBucket, store.ScanOptions{})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatalf("scan the job outbox: %v", err)
	}
	jobs := make([]app.Job, len(pairs))
	for i, p := range pairs {
		if err := json.Unmarshal(p.Value, &jobs[i]); err != nil {
			tb.Fatalf("outbox entry %s: %v", p.Key, err)
		}
		if jobs[i].ID != p.Key {
			tb.Fatalf("outbox entry %s holds job %s", p.Key, jobs[i].ID)
		}
	}
	return jobs
}

func jobIDs(jobs []app.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	slices.Sort(out)
	return out
}

// within runs f and fails the test unless it returns within d.
func within(tb testing.TB, d time.Duration, what string, f func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		tb.Fatalf("%s: no answer within %v", what, d)
	}
}

// With a queue that does not answer, writes are answered at once and the
// jobs they cause are in the job outbox, committed with them: a sign-up
// refused for a taken handle leaves none. Once the queue answers, every
// job is published and its entry deleted; a view is published without
// going through the outbox.
func TestJobOutboxCommitsWithTheWrite(t *testing.T) {
	q := newGatedQueue()
	s := openQueueStack(t, openDB(t), q)
	alice := s.client(t)
	var r response
	within(t, queueHold/3, "sign-up while the queue does not answer", func() {
		r = alice.json("POST", "/api/v1/signup", map[string]string{"handle": "alice", "email": "alice@example.com", "password": "correct horse"})
	})
	want(t, "sign-up while the queue does not answer", r, http.StatusCreated)
	jobs := outboxJobs(t, s.Store)
	if len(jobs) != 1 || jobs[0].Kind != app.JobWelcome {
		t.Fatalf("outbox after a sign-up = %+v, want one %s job", jobs, app.JobWelcome)
	}
	var wp app.WelcomePayload
	if err := json.Unmarshal(jobs[0].Payload, &wp); err != nil || wp.Handle != "alice" || wp.Email != "alice@example.com" || wp.UserID == "" {
		t.Errorf("welcome payload = %s (%v), want alice's handle, e-mail and id", jobs[0].Payload, err)
	}

	other := s.client(t)
	within(t, queueHold/3, "sign-up with a taken handle", func() {
		r = other.json("POST", "/api/v1/signup", map[string]string{"handle": "alice", "email": "other@example.com", "password": "correct horse"})
	})
	want(t, "sign-up with a taken handle", r, http.StatusConflict)
	if got := outboxJobs(t, s.Store); len(got) != 1 {
		t.Errorf("outbox after a refused sign-up has %d jobs, want still 1: %+v", len(got), got)
	}

	within(t, queueHold/3, "new post while the queue does not answer", func() {
		r = alice.json("POST", "/api/v1/posts", map[string]any{"title": "Queued", "body": "Body.", "published": true})
	})
	want(t, "new post", r, http.StatusCreated)
	id := r.JSON(t)["post"].(map[string]any)["id"].(string)
	within(t, queueHold/3, "comment while the queue does not answer", func() {
		r = alice.json("POST", "/api/v1/posts/"+id+"/comments", map[string]string{"body": "first"})
	})
	want(t, "comment", r, http.StatusCreated)
	within(t, queueHold/3, "read while the queue does not answer", func() { r = alice.get("/api/v1/posts/" + id) })
	want(t, "read", r, http.StatusOK)
	jobs = outboxJobs(t, s.Store)
	kinds := map[string]int{}
	for _, j := range jobs {
		kinds[j.Kind]++
	}
	if want := map[string]int{app.JobWelcome: 1, app.JobIndex: 1, app.JobNotifyFollowers: 1, app.JobCommentAdded: 1}; !maps.Equal(kinds, want) {
		t.Errorf("outbox kinds = %v, want %v (a view is not a write's job)", kinds, want)
	}
	// Every publish so far has failed; the sweep still counts the entries.
	testwait.Until(t, 3*queueHold, "the sweep to count the outbox", func() bool {
		st := status(s).Outbox
		return st.Pending == int64(len(jobs)) && st.PublishFailures > 0
	})

	q.open()
	testwait.Until(t, 3*queueHold, "the outbox to be published and emptied", func() bool {
		return len(outboxJobs(t, s.Store)) == 0 && status(s).Outbox.Pending == 0
	})
	if got, want := q.ids(app.JobWelcome, app.JobIndex, app.JobNotifyFollowers, app.JobCommentAdded), jobIDs(jobs); !slices.Equal(got, want) {
		t.Errorf("jobs published = %v, want the outbox's %v", got, want)
	}
	// A view is no write's job: it has no outbox entry, and one whose
	// publish failed while the queue was away is dropped (a count, not a
	// write). With the queue back, a view is published.
	r = alice.get("/api/v1/posts/" + id)
	want(t, "read with the queue back", r, http.StatusOK)
	testwait.Until(t, 5*time.Second, "a view to be published", func() bool { return len(q.ids(app.JobView)) >= 1 })
	if st := status(s).Outbox; st.Published < int64(len(jobs))+1 {
		t.Errorf("status outbox = %+v, want at least %d published", st, len(jobs)+1)
	}
}

// unknownOutcome is a store whose armed transaction commits and then
// answers 503, as when the primary's answer is lost in a failover.
type unknownOutcome struct {
	store.Store
	armed atomic.Bool
}

func (u *unknownOutcome) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := u.Store.Txn(ctx, ops...)
	if err == nil && u.armed.CompareAndSwap(true, false) {
		return 0, store.ErrUnavailable
	}
	return lsn, err
}

// A sign-up whose store answer is lost after the commit (503) still has its
// welcome job published, by the sweep, once.
func TestJobOutboxOutcomeUnknownWrite(t *testing.T) {
	q := newGatedQueue()
	q.open()
	st := &unknownOutcome{Store: openDB(t)}
	s := openQueueStack(t, st, q)
	st.armed.Store(true)
	c := s.client(t)
	r := c.json("POST", "/api/v1/signup", map[string]string{"handle": "lost", "email": "lost@example.com", "password": "correct horse"})
	want(t, "sign-up whose answer is lost", r, http.StatusServiceUnavailable)
	want(t, "sign-up again", c.json("POST", "/api/v1/signup", map[string]string{"handle": "lost", "email": "lost@example.com", "password": "correct horse"}), http.StatusConflict)
	testwait.Until(t, 10*time.Second, "the sweep to publish the welcome job", func() bool {
		return status(s).Outbox.Swept == 1 && len(outboxJobs(t, st)) == 0
	})
	if got := q.ids(app.JobWelcome); len(got) != 1 {
		t.Errorf("welcome jobs published = %v, want one", got)
	}
}

func status(s *stack) app.Status {
	st := s.App.Status().(app.Status)
	if st.Outbox == nil {
		st.Outbox = &app.OutboxStatus{Pending: -1}
	}
	return st
}
