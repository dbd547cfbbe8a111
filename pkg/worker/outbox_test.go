package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/worker"
)

// The job outbox of the app (--jobs=queue) with the real pieces: a NATS
// server, a store server, the app publishing through worker.Publisher, and
// a worker writing the e-mails.

// openApp opens the blog app with --jobs=queue over st (the env's store,
// or a wrapper of it), with a Publisher of its own, as a node with the app
// role has.
func (e *env) openApp(t testing.TB, name string, st store.Store) *app.App {
	t.Helper()
	natsURL := e.nats.ClientURL()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
	jc := queue.DefaultJobsConfig()
	jc.PublishTimeout = publishTimeout
	p, err := worker.NewPublisher(worker.PublisherConfig{Name: name + "-jobs", Jobs: jc},
		worker.PublisherDeps{NATS: func() []string { return []string{natsURL} }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Open(); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the app stops publishing before its
	// publisher closes, as in the node.
	t.Cleanup(func() { p.Close() })
	cfg := app.DefaultConfig()
	cfg.Addr, cfg.NodeName, cfg.DataDir = "127.0.0.1:0", name, t.TempDir()
	cfg.BcryptCost = 4
	cfg.Jobs = "queue"
	cfg.JobOutboxSweep, cfg.JobOutboxAge = 100*time.Millisecond, 500*time.Millisecond
	a, err := app.New(cfg, app.Deps{Store: st, JobQueue: p, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// stopNATS shuts the NATS server down; restartNATS starts it again on the
// same port with the same data, so clients reconnect to it.
func (e *env) stopNATS(t testing.TB) {
	t.Helper()
	if err := e.nats.Close(); err != nil {
		t.Fatalf("stop NATS: %v", err)
	}
}

func (e *env) restartNATS(t testing.TB, clientURL string) {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.natsCfg
	if cfg.ClientPort, err = strconv.Atoi(u.Port()); err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Open(); err != nil {
		t.Fatalf("restart NATS: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	e.nats = ns
}

// blogUser is one API user of an app, with its own cookies.
type blogUser struct {
	t    testing.TB
	base string
	http *http.Client
}

func newBlogUser(t testing.TB, a *app.App) *blogUser {
	jar, _ := cookiejar.New(nil)
	return &blogUser{t: t, base: "http://" + a.Addr(), http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// send sends v as JSON and returns the status, the time the answer took
// and the decoded body.
func (u *blogUser) send(method, path string, v any) (int, time.Duration, map[string]any) {
	u.t.Helper()
	b, _ := json.Marshal(v)
	req, err := http.NewRequest(method, u.base+path, bytes.NewReader(b))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := u.http.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	took := time.Since(start)
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, took, out
}

func (u *blogUser) signup(handle string) (int, time.Duration) {
	u.t.Helper()
	code, took, _ := u.send(http.MethodPost, "/api/v1/signup",
		map[string]string{"handle": handle, "email": handle + "@example.com", "password": "correct horse"})
	return code, took
}

// emailsTo counts the e-mails in dir addressed to handle.
func emailsTo(t testing.TB, dir, handle string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "To: "+handle+" <"+handle+"@example.com>\r\n") {
			n++
		}
	}
	return n
}

// outboxLen is the number of entries in the app's job outbox.
func outboxLen(t testing.TB, st store.Store) int {
	t.Helper()
	pairs, err := st.Scan(store.WithConsistency(ctxT(t), store.Strong, 0), app.JobOutboxBucket, store.ScanOptions{})
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("scan the job outbox: %v", err)
	}
	return len(pairs)
}

// storedJobs is how many messages the JOBS stream has ever stored (its
// last sequence): a publish JetStream dropped as a duplicate is not one.
func storedJobs(t testing.TB, natsURL string) uint64 {
	t.Helper()
	cc := queue.DefaultClientConfig()
	cc.Servers, cc.Name = func() []string { return []string{natsURL} }, "test-stats"
	ctx := ctxT(t)
	c, err := queue.Connect(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.JetStream().Stream(ctx, "JOBS")
	if err != nil {
		t.Fatalf("JOBS stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("JOBS stream info: %v", err)
	}
	return info.State.LastSeq
}

// publishTimeout is how long the apps' publishers try a job before they
// give up (10s in a node; shorter here, so that failures show sooner).
// maxAnswer is the longest a write may take to be answered while the queue
// is down: an answer that waited for the queue would take publishTimeout.
const (
	publishTimeout = 4 * time.Second
	maxAnswer      = publishTimeout / 2
)

// With the NATS server down, sign-ups and posts are answered at once; their
// jobs wait in the outbox and are published, and done, once NATS is back.
func TestOutboxQueueDown(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, nil)
	a := e.openApp(t, "app-1", e.client)
	u := newBlogUser(t, a)
	if code, _ := u.signup("before"); code != http.StatusCreated {
		t.Fatalf("sign-up before: status %d, want 201", code)
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // the welcome e-mail of the sign-up before
		if n := emailsTo(t, e.outbox, "before"); n != 1 {
			return fmt.Errorf("%d e-mails to before", n)
		}
		return nil
	})

	natsURL := e.nats.ClientURL()
	e.stopNATS(t)
	during := newBlogUser(t, a)
	code, took := during.signup("during")
	if code != http.StatusCreated || took > maxAnswer {
		t.Errorf("sign-up while NATS is down: status %d after %v, want 201 within %v", code, took, maxAnswer)
	}
	code, took, out := during.send(http.MethodPost, "/api/v1/posts", map[string]any{"title": "Written in the dark", "body": "Body.", "published": true})
	if code != http.StatusCreated || took > maxAnswer {
		t.Fatalf("post while NATS is down: status %d after %v, want 201 within %v", code, took, maxAnswer)
	}
	postID := out["post"].(map[string]any)["id"].(string)
	if n := outboxLen(t, e.client); n != 3 {
		t.Errorf("job outbox while NATS is down holds %d jobs, want 3 (welcome, index, notify-followers)", n)
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // the app to count the failed publishes
		if st := a.Status().(app.Status).Outbox; st.PublishFailures == 0 || st.Pending != 3 {
			return fmt.Errorf("outbox status %+v", st)
		}
		return nil
	})

	e.restartNATS(t, natsURL)
	testwait.RetryUntil(t, 30*time.Second, func() error { // the jobs of the writes made while NATS was down
		if n := emailsTo(t, e.outbox, "during"); n != 1 {
			return fmt.Errorf("%d e-mails to during", n)
		}
		if hits, err := e.svc.Search.Query(ctxT(t), "dark", 10); err != nil || len(hits) != 1 || hits[0] != postID {
			return fmt.Errorf("search for the post finds %v, %v", hits, err)
		}
		if n := outboxLen(t, e.client); n != 0 {
			return fmt.Errorf("the job outbox holds %d jobs", n)
		}
		return nil
	})
	if got := w.Counts(app.JobWelcome, "done"); got != 2 {
		t.Errorf("welcome jobs done = %d, want 2", got)
	}
}

// lostAnswer is the store as the app sees it during a failover: the armed
// transaction commits, and its answer is lost (503).
type lostAnswer struct {
	store.Store
	armed atomic.Bool
}

func (l *lostAnswer) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := l.Store.Txn(ctx, ops...)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("store txn: answer lost after the commit: %w", store.ErrUnavailable)
	}
	return lsn, err
}

// A sign-up that committed but was answered 503 still gets its welcome
// e-mail, once.
func TestOutboxOutcomeUnknownSignup(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, nil)
	st := &lostAnswer{Store: e.client}
	a := e.openApp(t, "app-1", st)
	u := newBlogUser(t, a)
	st.armed.Store(true)
	if code, _ := u.signup("unlucky"); code != http.StatusServiceUnavailable {
		t.Fatalf("sign-up whose answer is lost: status %d, want 503", code)
	}
	if code, _ := u.signup("unlucky"); code != http.StatusConflict {
		t.Fatalf("sign-up again: status %d, want 409 (the first one committed)", code)
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // the welcome e-mail of the sign-up answered 503
		if n := emailsTo(t, e.outbox, "unlucky"); n != 1 {
			return fmt.Errorf("%d e-mails to unlucky", n)
		}
		if n := outboxLen(t, e.client); n != 0 {
			return fmt.Errorf("the job outbox holds %d jobs", n)
		}
		return nil
	})
	// A second publish would be done within the sweep interval (100ms);
	// give it ten.
	time.Sleep(time.Second)
	if n := emailsTo(t, e.outbox, "unlucky"); n != 1 {
		t.Errorf("%d e-mails to unlucky, want 1", n)
	}
	if got := w.Counts(app.JobWelcome, "done"); got != 1 {
		t.Errorf("welcome jobs done = %d, want 1", got)
	}
	if st := a.Status().(app.Status).Outbox; st.Swept != 1 {
		t.Errorf("outbox status %+v, want 1 swept", st)
	}
}

// Two apps sweep one outbox at once, after NATS comes back: each job is
// stored in the queue once and done once, and the outbox is emptied.
func TestOutboxTwoRelays(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, nil)
	a1 := e.openApp(t, "app-1", e.client)
	a2 := e.openApp(t, "app-2", e.client)
	natsURL := e.nats.ClientURL()
	// Both publishers connect, and the JOBS stream exists, before NATS goes.
	for i, a := range []*app.App{a1, a2} {
		if code, _ := newBlogUser(t, a).signup(fmt.Sprintf("warmup%d", i)); code != http.StatusCreated {
			t.Fatalf("warm-up sign-up on app-%d: status %d", i+1, code)
		}
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // the warm-up jobs
		if got := w.Counts(app.JobWelcome, "done"); got != 2 {
			return fmt.Errorf("%d welcome jobs done", got)
		}
		return nil
	})
	before := storedJobs(t, natsURL)

	e.stopNATS(t)
	const signups = 10
	for i := range signups {
		a := []*app.App{a1, a2}[i%2]
		if code, took := newBlogUser(t, a).signup(fmt.Sprintf("user%d", i)); code != http.StatusCreated || took > maxAnswer {
			t.Fatalf("sign-up %d while NATS is down: status %d after %v, want 201 within %v", i, code, took, maxAnswer)
		}
	}
	// Both relays sweep the same outbox, and fail, until NATS is back.
	testwait.RetryUntil(t, 30*time.Second, func() error { // both apps to have tried to publish the outbox
		for _, a := range []*app.App{a1, a2} {
			if st := a.Status().(app.Status).Outbox; st.Pending != signups || st.PublishFailures == 0 {
				return fmt.Errorf("outbox status %+v", st)
			}
		}
		return nil
	})
	// Each relay's sweep is now retrying the oldest entry, and will publish
	// it when NATS is back, whichever relay deletes the entry first.
	e.restartNATS(t, natsURL)
	testwait.RetryUntil(t, 30*time.Second, func() error { // every welcome e-mail
		for i := range signups {
			if n := emailsTo(t, e.outbox, fmt.Sprintf("user%d", i)); n != 1 {
				return fmt.Errorf("%d e-mails to user%d", n, i)
			}
		}
		if n := outboxLen(t, e.client); n != 0 {
			return fmt.Errorf("the job outbox holds %d jobs", n)
		}
		for i, a := range []*app.App{a1, a2} {
			if st := a.Status().(app.Status).Outbox; st.Published < 2 {
				return fmt.Errorf("app-%d has published nothing since NATS came back: %+v", i+1, st)
			}
		}
		return nil
	})
	if got := storedJobs(t, natsURL) - before; got != signups {
		t.Errorf("JOBS stored %d messages after NATS came back, want %d: one per job", got, signups)
	}
	if got := w.Counts(app.JobWelcome, "done"); got != 2+signups {
		t.Errorf("welcome jobs done = %d, want %d", got, 2+signups)
	}
	s1, s2 := a1.Status().(app.Status).Outbox, a2.Status().(app.Status).Outbox
	t.Logf("app-1 %+v; app-2 %+v; %d publishes were duplicates JetStream dropped",
		s1, s2, s1.Published+s2.Published-int64(2+signups))
}
