package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The last-try gap. A worker buries a job whose last try failed (Bury). A
// worker that dies during the last try buries nothing: when the ack wait
// runs out, the consumer has no try left, stops delivering the message and
// leaves it in the work stream, where nobody would ever see it. What the
// server does at that moment is publish a MAX_DELIVERIES advisory naming
// the stream sequence. Workers listen to it (in one queue group, so one of
// them acts) and move the message to the dead-letter stream with the same
// Nats-Msg-Id Bury uses, so a worker that buried the job but died before
// its Term, and the advisory that follows, leave one dead letter.
//
// Advisories are core NATS messages: one published while no worker listens
// is lost, and that job stays in the work stream (node jobs stats shows it
// in the depth of its kind) until a worker moves it by sequence.

// maxDeliveriesAdvisory is the part of nats-server's
// JSConsumerDeliveryExceededAdvisory the queue reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// MaxDeliveriesSubject is the subject of the server's advisories for jobs
// of the work stream that ran out of tries, for every consumer.
func (q *JobQueue) MaxDeliveriesSubject() string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + q.cfg.Stream + ".*"
}

// deadQueueGroup is the queue group of the advisory subscribers: the
// server gives each advisory to one worker.
const deadQueueGroup = "scalestack-jobs-dead"

// WatchMaxDeliveries subscribes to the work stream's MAX_DELIVERIES
// advisories on nc and moves each job named to the dead-letter stream
// (MoveDead), calling moved, when not nil, with the kind of each job moved.
// The returned stop unsubscribes and waits for the move in progress. The
// moves run on one goroutine owned by the subscription; each is bounded
// by PublishTimeout.
func (q *JobQueue) WatchMaxDeliveries(nc *nats.Conn, moved func(kind string)) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanQueueSubscribe(q.MaxDeliveriesSubject(), deadQueueGroup, ch)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("queue: watch max deliveries: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-ch:
				q.onMaxDeliveries(ctx, m.Data, moved)
			}
		}
	}()
	return func() {
		_ = sub.Unsubscribe()
		cancel()
		<-done
	}, nil
}

func (q *JobQueue) onMaxDeliveries(ctx context.Context, data []byte, moved func(string)) {
	var a maxDeliveriesAdvisory
	if err := json.Unmarshal(data, &a); err != nil || a.StreamSeq == 0 {
		q.log.Warn("queue: max deliveries advisory ignored", "err", err, "data", truncate(string(data), 200))
		return
	}
	if a.Stream != q.cfg.Stream {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.PublishTimeout)
	defer cancel()
	kind, err := q.MoveDead(ctx, a.StreamSeq, a.Deliveries,
		fmt.Errorf("ran out of tries: no answer to delivery %d of %d within the ack wait (worker died?)", a.Deliveries, q.cfg.MaxDeliver))
	switch {
	case err != nil:
		q.log.Error("queue: move a job out of tries to the dead letters", "seq", a.StreamSeq, "consumer", a.Consumer, "err", err)
	case kind != "" && moved != nil:
		moved(kind)
	}
}

// MoveDead moves the job at sequence seq of the work stream to the
// dead-letter stream and deletes it from the work stream. It returns the
// job's kind, or "" when the message is gone already (acked, or buried by
// its worker). The dead letter carries Bury's Nats-Msg-Id, so moving a job
// its worker has buried adds nothing (within the Duplicates window).
func (q *JobQueue) MoveDead(ctx context.Context, seq, deliveries uint64, cause error) (kind string, err error) {
	actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	defer cancel()
	s, err := q.js.Stream(actx, q.cfg.Stream)
	if err != nil {
		return "", fmt.Errorf("queue: move dead %d: %w", seq, err)
	}
	m, err := s.GetMsg(actx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("queue: move dead %d: get: %w", seq, err)
	}
	kind = Kind(m.Subject)
	id := JobID(m.Header)
	dm := deadLetter(kind, id, m.Header.Get(jetstream.MsgIDHeader), cause, deliveries, m.Data)
	if _, err := q.publish(ctx, dm); err != nil {
		return "", fmt.Errorf("queue: move dead %s %s: %w", kind, id, err)
	}
	actx2, cancel2 := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
	defer cancel2()
	if err := s.DeleteMsg(actx2, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", fmt.Errorf("queue: move dead %s %s: delete from work stream: %w", kind, id, err)
	}
	q.log.Warn("job is dead: its last try went unanswered", "kind", kind, "id", id, "seq", seq, "deliveries", deliveries)
	return kind, nil
}

// deadLetter builds the dead-letter message of a job. Its Nats-Msg-Id
// depends only on the job, so every path that buries one job stores one
// dead letter.
func deadLetter(kind, id, msgID string, cause error, deliveries uint64, data []byte) *nats.Msg {
	dm := nats.NewMsg("jobs.dead." + kind)
	dm.Header.Set(jetstream.MsgIDHeader, "dead/"+id+"/"+msgID)
	dm.Header.Set(HeaderJobID, id)
	if cause != nil {
		dm.Header.Set(HeaderError, truncate(cause.Error(), 512))
	}
	if deliveries > 0 {
		dm.Header.Set(HeaderDeliveries, strconv.FormatUint(deliveries, 10))
	}
	dm.Header.Set(HeaderDeadAt, time.Now().UTC().Format(time.RFC3339))
	dm.Data = data
	return dm
}
