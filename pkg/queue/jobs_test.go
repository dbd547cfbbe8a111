package queue_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
)

// standaloneJobs starts a standalone server and returns a JobQueue on it.
func standaloneJobs(t testing.TB, kinds ...string) (*queue.JobQueue, *queue.Conn) {
	t.Helper()
	cfg := serverConfig(t, "solo", "127.0.0.1")
	cfg.Standalone = true
	cfg.Routes = nil
	s := mustOpen(t, cfg)
	c := mustConnect(t, "jobs", staticServers(s.ClientURL()))
	jc := queue.DefaultJobsConfig()
	jc.Kinds = kinds
	jc.BackoffBase = 50 * time.Millisecond
	q, err := queue.NewJobQueue(c.JetStream(), jc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Ensure(ctx); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return q, c
}

func TestJobsDuplicatePublishStoredOnce(t *testing.T) {
	q, c := standaloneJobs(t, "mail")
	ctx := context.Background()
	dup, err := q.Publish(ctx, "mail", "job-1", []byte("a"))
	if err != nil || dup {
		t.Fatalf("first Publish = %v, %v; want false, nil", dup, err)
	}
	dup, err = q.Publish(ctx, "mail", "job-1", []byte("a"))
	if err != nil || !dup {
		t.Fatalf("second Publish of the same id = %v, %v; want true, nil", dup, err)
	}
	if got, want := streamMessages(t, c.JetStream(), "JOBS"), []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("stream holds %q, want %q", got, want)
	}
	if _, err := q.Publish(ctx, "no.dots", "x", nil); !errors.Is(err, queue.ErrBadKind) {
		t.Errorf("Publish with kind %q = %v, want ErrBadKind", "no.dots", err)
	}
}

func TestJobsBackoffDoubles(t *testing.T) {
	jc := queue.DefaultJobsConfig()
	jc.BackoffBase, jc.BackoffMax = time.Second, 5*time.Second
	q, err := queue.NewJobQueue(nil, jc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		delivered uint64
		want      time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 5 * time.Second}, {50, 5 * time.Second}} {
		if got := q.Backoff(tc.delivered); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.delivered, got, tc.want)
		}
	}
}

// fetchOne fetches one job of kind.
func fetchOne(t testing.TB, q *queue.JobQueue, kind string) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := q.Consumer(ctx, kind)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		return m
	}
	t.Fatalf("no %s job delivered: %v", kind, b.Error())
	return nil
}

func TestJobsBuryListRetry(t *testing.T) {
	q, _ := standaloneJobs(t, "thumb")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := q.Publish(ctx, "thumb", "poison", []byte(`{"bad":1}`)); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, q, "thumb")
	if got := queue.JobID(m.Headers()); got != "poison" {
		t.Fatalf("JobID = %q, want poison", got)
	}
	if err := q.Bury(ctx, m, errors.New("cannot decode")); err != nil {
		t.Fatalf("Bury: %v", err)
	}
	dead, err := q.Dead(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != "poison" || dead[0].Kind != "thumb" || dead[0].Error != "cannot decode" || dead[0].Deliveries != 1 {
		t.Fatalf("Dead = %+v, want the poison thumb job with its error and 1 delivery", dead)
	}
	stats, err := q.Stats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Dead != 1 || stats[0].Depth != 0 {
		t.Errorf("Stats = %+v, want thumb with depth 0 and 1 dead", stats)
	}
	if _, err := q.Retry(ctx, "other"); !errors.Is(err, queue.ErrNotDead) {
		t.Errorf("Retry(other) = %v, want ErrNotDead", err)
	}
	// Retried within the Duplicates window of the first publish: the replay
	// has its own Msg-Id, so the stream keeps it.
	if n, err := q.Retry(ctx, "poison"); err != nil || n != 1 {
		t.Fatalf("Retry(poison) = %d, %v; want 1, nil", n, err)
	}
	m = fetchOne(t, q, "thumb")
	if got, want := string(m.Data()), `{"bad":1}`; queue.JobID(m.Headers()) != "poison" || got != want {
		t.Errorf("replayed job = %s %q, want poison %q", queue.JobID(m.Headers()), got, want)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if dead, err := q.Dead(ctx, 0); err != nil || len(dead) != 0 {
		t.Errorf("Dead after retry = %+v, %v; want none", dead, err)
	}
}

func TestJobsPublishFailsClearlyWithoutNATS(t *testing.T) {
	q, c := standaloneJobs(t, "mail")
	c.NATS().Close()
	jc := q.Config()
	start := time.Now()
	_, err := q.Publish(context.Background(), "mail", "late", nil)
	if !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("Publish on a closed connection = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > jc.PublishTimeout+5*time.Second {
		t.Errorf("Publish gave up after %v, want about PublishTimeout %v", el, jc.PublishTimeout)
	}
}

// TestJobsSurviveNATSCrash publishes jobs to an R3 stream while the server
// leading it is killed with SIGKILL: every publish that returned without
// error is in the stream afterwards.
func TestJobsSurviveNATSCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers and waits for an election")
	}
	s1 := mustOpen(t, serverConfig(t, "j1", "127.0.0.5"))
	s2 := mustOpen(t, serverConfig(t, "j2", "127.0.0.6", s1.ClusterURL()))
	ch := startChild(t, childConfig{name: "j3", host: "127.0.0.7", dir: t.TempDir(), routes: []string{s1.ClusterURL()}})
	testwait.RetryUntil(t, 20*time.Second, func() error { // three servers with a meta leader
		for _, s := range []*natsserver.Server{s1, s2} {
			if n := s.ClusterSize(); n != 3 {
				return fmt.Errorf("cluster size %d", n)
			}
			if s.MetaLeader() == "" {
				return errors.New("no meta leader")
			}
		}
		return nil
	})
	c := mustConnect(t, "publisher", staticServers(s1.ClientURL(), s2.ClientURL()))
	jc := queue.DefaultJobsConfig()
	jc.Kinds = []string{"mail"}
	jc.Servers = func() int { return 3 }
	jc.PublishTimeout = 30 * time.Second
	q, err := queue.NewJobQueue(c.JetStream(), jc)
	if err != nil {
		t.Fatal(err)
	}
	testwait.RetryUntil(t, 30*time.Second, func() error { // R3 job streams
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return q.Ensure(ctx)
	})
	moveLeader(t, c, "JOBS", "j3")

	var (
		mu    sync.Mutex
		acked []string
		errs  int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("job-%05d", i)
			if _, err := q.Publish(context.Background(), "mail", id, []byte(id)); err != nil {
				mu.Lock()
				errs++
				mu.Unlock()
				continue
			}
			mu.Lock()
			acked = append(acked, id)
			mu.Unlock()
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testwait.RetryUntil(t, 20*time.Second, func() error { // some jobs published
		if n := count(); n < 20 {
			return fmt.Errorf("%d published", n)
		}
		return nil
	})
	before := count()
	ch.kill()
	killed := time.Now()
	testwait.RetryUntil(t, 40*time.Second, func() error { // publishing resumes after kill -9
		if n := count(); n < before+20 {
			return fmt.Errorf("%d published since the kill", n-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	t.Logf("%d jobs acknowledged (%d before the kill, publishing resumed within %v), %d publish errors",
		len(acked), before, time.Since(killed).Round(100*time.Millisecond), errs)

	got := streamMessages(t, c.JetStream(), "JOBS")
	for _, id := range acked {
		if !slices.Contains(got, id) {
			t.Errorf("acknowledged job %s is not in the stream", id)
		}
	}
	if len(got) != len(slices.Compact(slices.Sorted(slices.Values(got)))) {
		t.Errorf("the stream holds a job twice")
	}
}
