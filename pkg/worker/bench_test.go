package worker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/worker"
)

// The end-to-end job rate (publish, consume, handle, ack) through
// Publisher and Worker, against raw nats.go doing the same with the same
// stream (work queue, file storage, SyncAlways, Msg-Id) and the same acks.
// The job is an index job for a post that does not exist: the handler
// removes it from an in-memory search index, so the figures are the
// queue's, not the store's. bench/queue/run.sh runs both and prints the
// ratio.

const benchPublishers = 8

func BenchmarkJobsEndToEnd(b *testing.B) {
	e := newEnv(b)
	svc := app.NewServices(apptest.NewMemStore(), 4)
	w := e.startWorker(b, func(c *worker.Config, d *worker.Deps) { d.Services = &svc; d.Logger = nil })
	p := e.publisher(b)
	ctx := context.Background()
	// Connected before the clock starts, as the raw side is.
	if _, err := p.Queue(ctx); err != nil {
		b.Fatal(err)
	}
	payload := []byte(`{"post_id":"nope"}`)
	b.ResetTimer()
	publishAll(b, func(i int) error {
		return p.Enqueue(ctx, app.Job{Kind: app.JobIndex, ID: fmt.Sprintf("j%09d", i), Payload: payload})
	})
	testwait.RetryUntil(b, time.Minute, func() error { // all jobs done
		if got := w.Counts(app.JobIndex, "done"); got < int64(b.N) {
			return fmt.Errorf("%d of %d done", got, b.N)
		}
		return nil
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

func BenchmarkJobsRawNATS(b *testing.B) {
	e := newEnv(b)
	conn := connect(b, e.nats.ClientURL())
	js := conn.JetStream()
	ctx := context.Background()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "RAW", jetstream.ConsumerConfig{Durable: "raw",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxAckPending: 1000})
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		m.Ack()
		done.Add(1)
	}, jetstream.PullMaxMessages(8))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	payload := []byte(`{"post_id":"nope"}`)
	b.ResetTimer()
	publishAll(b, func(i int) error {
		_, err := js.Publish(ctx, "raw.index", payload, jetstream.WithMsgID(fmt.Sprintf("j%09d", i)))
		return err
	})
	testwait.RetryUntil(b, time.Minute, func() error { // all messages acked
		if got := done.Load(); got < int64(b.N) {
			return fmt.Errorf("%d of %d acked", got, b.N)
		}
		return nil
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// publishAll publishes b.N jobs from benchPublishers goroutines, as an app
// under load does.
func publishAll(b *testing.B, pub func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range benchPublishers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				if err := pub(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func connect(b *testing.B, url string) *queue.Conn {
	cfg := queue.DefaultClientConfig()
	cfg.Servers = func() []string { return []string{url} }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := queue.Connect(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
