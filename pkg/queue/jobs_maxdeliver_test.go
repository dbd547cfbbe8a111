package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/queue"
)

// lastTryJobs is a JobQueue on a standalone server whose jobs get two
// tries of one second each, so that a job left unanswered runs out fast.
func lastTryJobs(t testing.TB, kind string) (*queue.JobQueue, *queue.Conn) {
	t.Helper()
	cfg := serverConfig(t, "solo", "127.0.0.1")
	cfg.Standalone = true
	cfg.Routes = nil
	s := mustOpen(t, cfg)
	c := mustConnect(t, "jobs", staticServers(s.ClientURL()))
	jc := queue.DefaultJobsConfig()
	jc.Kinds = []string{kind}
	jc.MaxDeliver = 2
	jc.AckWait = time.Second
	jc.Logger = testLogger(t, "jobs")
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

// TestJobsLastTryUnansweredGoesDead: a worker that dies during a job's
// last try never buries it; the server's MAX_DELIVERIES advisory makes the
// watcher move it to the dead letters and out of the work stream.
func TestJobsLastTryUnansweredGoesDead(t *testing.T) {
	q, c := lastTryJobs(t, "thumb")
	var moved atomic.Int64
	stop, err := q.WatchMaxDeliveries(c.NATS(), func(kind string) {
		if kind == "thumb" {
			moved.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := q.Publish(ctx, "thumb", "lost", []byte("payload")); err != nil {
		t.Fatal(err)
	}
	// Two deliveries, neither answered: the worker holding each died.
	for try := 1; try <= 2; try++ {
		m := fetchOne(t, q, "thumb")
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumDelivered != uint64(try) {
			t.Fatalf("delivery %d: NumDelivered = %d", try, md.NumDelivered)
		}
	}
	// Another worker goes on pulling. nats-server v2.15.2 notices a pull
	// consumer's job is out of tries when it would deliver it again, so the
	// advisory needs a pull request waiting; with live workers there is one.
	cons, err := q.Consumer(ctx, "thumb")
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		t.Fatalf("a job out of tries was delivered again: %s (%s)", queue.JobID(m.Headers()), m.Subject())
	}
	testwait.RetryUntil(t, 10*time.Second, func() error { // the job out of tries is in the dead letters
		dead, err := q.Dead(ctx, 0)
		if err != nil {
			return err
		}
		if len(dead) != 1 || dead[0].ID != "lost" || dead[0].Kind != "thumb" || string(dead[0].Payload) != "payload" || dead[0].Deliveries != 2 {
			return fmt.Errorf("Dead = %+v, want the lost thumb job after 2 deliveries", dead)
		}
		return nil
	})
	if got := streamMessages(t, c.JetStream(), "JOBS"); len(got) != 0 {
		t.Errorf("work stream holds %q after the move, want nothing", got)
	}
	if got := moved.Load(); got != 1 {
		t.Errorf("moved called %d times for thumb, want 1", got)
	}
	if n, err := q.Retry(ctx, "lost"); err != nil || n != 1 {
		t.Fatalf("Retry(lost) = %d, %v; want 1, nil", n, err)
	}
	if m := fetchOne(t, q, "thumb"); queue.JobID(m.Headers()) != "lost" {
		t.Errorf("replayed job id = %q, want lost", queue.JobID(m.Headers()))
	}
}

// TestJobsMoveDeadAndBuryLeaveOneDeadLetter: the advisory's move and the
// worker's own burying of one job, in either order, store one dead letter.
func TestJobsMoveDeadAndBuryLeaveOneDeadLetter(t *testing.T) {
	q, c := lastTryJobs(t, "mail")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := q.Publish(ctx, "mail", "both", []byte("x")); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, q, "mail")
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	kind, err := q.MoveDead(ctx, md.Sequence.Stream, 1, errors.New("moved"))
	if err != nil || kind != "mail" {
		t.Fatalf("MoveDead = %q, %v; want mail, nil", kind, err)
	}
	if err := q.Bury(ctx, m, errors.New("buried")); err != nil {
		t.Fatalf("Bury after MoveDead: %v", err)
	}
	kind, err = q.MoveDead(ctx, md.Sequence.Stream, 1, errors.New("moved again"))
	if err != nil || kind != "" {
		t.Fatalf("MoveDead of a job already moved = %q, %v; want \"\", nil", kind, err)
	}
	dead, err := q.Dead(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != "both" || dead[0].Error != "moved" {
		t.Fatalf("Dead = %+v, want one dead letter of job both (the first, error moved)", dead)
	}
	if got := streamMessages(t, c.JetStream(), "JOBS"); len(got) != 0 {
		t.Errorf("work stream holds %q, want nothing", got)
	}
}
