package events_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/queue"
)

// The first real path: a badge payment's event goes from the payments
// outbox through JetStream to the users service, which grants the badge.
func TestBadgeEventGrantsTheBadge(t *testing.T) {
	e := newEnv(t, nil)
	pub := e.publisher(t, nil)
	e.pay.EventsCommitted = pub.Nudge
	sub := e.subscriber(t, nil)

	u, p := e.buyBadge(t, "ada")
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	e.waitOutboxEmpty(t)
	if got, want := e.streamIDs(t), []string{p.EventID}; !slices.Equal(got, want) {
		t.Errorf("stream holds events %q, want %q", got, want)
	}
	e.wantGrants(t, 1)
	if st := pub.Status(); st.Published != 1 || st.Duplicates != 0 || st.Pending != 0 {
		t.Errorf("publisher status %+v, want 1 published, no duplicate, none pending", st)
	}
	if st := sub.Status().Subscriptions[0]; st.Handled != 1 || st.Retried != 0 || st.Rejected != 0 {
		t.Errorf("subscription status %+v, want 1 handled", st)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(pub, sub)
	for name, want := range map[string]float64{
		`scalestack_events_published_total{service="payments"}`:                     1,
		`scalestack_events_outbox_pending{service="payments"}`:                      0,
		`scalestack_events_handled_total{service="users",type="badge.granted"}`:     1,
		`scalestack_events_redelivered_total{service="users",type="badge.granted"}`: 0,
	} {
		if got, ok := gathered(t, reg)[name]; !ok || got != want {
			t.Errorf("metric %s = %v (found %v), want %v", name, got, ok, want)
		}
	}
}

// gathered returns every metric of reg as name{label="value",...} -> value.
func gathered(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

// killedOutbox is the outbox of a publisher killed after JetStream
// acknowledged its publish and before it removed the entry: Remove never
// happens.
type killedOutbox struct {
	events.Outbox
	once   sync.Once
	killed chan struct{}
}

func (o *killedOutbox) Remove(ctx context.Context, ids ...string) error {
	o.once.Do(func() { close(o.killed) })
	return errors.New("killed before the remove")
}

// (a) The publisher dies between the publish and the remove: the next one
// publishes the event again, JetStream drops it as a duplicate, and the
// badge is granted once.
func TestPublisherKilledBeforeRemove(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	u, p := e.buyBadge(t, "ada")

	killed := &killedOutbox{Outbox: e.pay.Outbox(), killed: make(chan struct{})}
	first := e.publisher(t, killed)
	select {
	case <-killed.killed:
	case <-time.After(20 * time.Second):
		t.Fatalf("the first publisher never got to its remove: %+v", first.Status())
	}
	first.Close()
	if evs, err := e.pay.PendingEvents(context.Background(), 0); err != nil || len(evs) != 1 || evs[0].ID != p.EventID {
		t.Fatalf("outbox after the kill = %+v, %v; want the event still there", evs, err)
	}
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)

	second := e.publisher(t, nil)
	e.waitOutboxEmpty(t)
	if st := second.Status(); st.Published != 1 || st.Duplicates != 1 {
		t.Errorf("second publisher status %+v, want its one publish a duplicate", st)
	}
	if got, want := e.streamIDs(t), []string{p.EventID}; !slices.Equal(got, want) {
		t.Errorf("stream holds events %q, want %q", got, want)
	}
	e.wantGrants(t, 1)
	if st := sub.Status().Subscriptions[0]; st.Handled != 1 {
		t.Errorf("subscription status %+v, want the event handled once", st)
	}
}

// (b) The handler fails once (the users store was down): the event is
// delivered again and the badge granted once.
func TestHandlerFailsOnce(t *testing.T) {
	e := newEnv(t, nil)
	var mu sync.Mutex
	calls := 0
	sub := e.subscriber(t, func(ctx context.Context, ev svc.Event) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			return fmt.Errorf("users store: %w", errors.New("unavailable"))
		}
		return e.users.HandleBadgeGranted(ctx, ev)
	})
	pub := e.publisher(t, nil)
	e.pay.EventsCommitted = pub.Nudge
	u, p := e.buyBadge(t, "ada")
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	e.wantGrants(t, 1)
	st := sub.Status().Subscriptions[0]
	if st.Handled != 1 || st.Retried != 1 || st.Redelivered != 1 {
		t.Errorf("subscription status %+v, want 1 retried, redelivered once, then handled", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("handler called %d times, want 2", calls)
	}
}

// (c) The same event is published twice, the second time after the
// stream's duplicate window: JetStream keeps both, and the users service's
// applied ids keep the second from granting again.
func TestRepublishAfterDuplicateWindow(t *testing.T) {
	e := newEnv(t, func(c *queue.EventsConfig) { c.Duplicates = 100 * time.Millisecond })
	sub := e.subscriber(t, nil)
	pub := e.publisher(t, nil)
	e.pay.EventsCommitted = pub.Nudge
	u, p := e.buyBadge(t, "ada")
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	e.waitOutboxEmpty(t)

	// What a publisher that lost its remove and came back after the
	// window does: the same id and body again.
	ev := p.EventID
	stored := e.storedEvent(t, ev)
	testwait.RetryUntil(t, 10*time.Second, func() error { // a publish past the window
		dup, err := e.stream.Publish(context.Background(), svc.EventBadgeGranted, ev, stored)
		if err != nil {
			return err
		}
		if dup {
			return fmt.Errorf("publish of %s still within the duplicate window", ev)
		}
		return nil
	})
	if got, want := e.streamIDs(t), []string{ev, ev}; !slices.Equal(got, want) {
		t.Errorf("stream holds events %q, want %q", got, want)
	}
	waitHandled(t, sub, 2)
	e.wantGrants(t, 1)
	if applied, err := e.users.ApplyBadgeEvent(context.Background(), ev, u.ID, p.ID); err != nil || applied {
		t.Errorf("ApplyBadgeEvent(%s) again = %v, %v; want false, nil", ev, applied, err)
	}
}

// storedEvent returns the body of the stream's message of event id.
func (e *env) storedEvent(t testing.TB, id string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.conn.JetStream().Stream(ctx, e.stream.Config().Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, queue.EventSubject(svc.EventBadgeGranted))
	if err != nil || m.Header.Get(queue.HeaderEventID) != id {
		t.Fatalf("last badge message = %v, %v; want event %s", m, err, id)
	}
	return m.Data
}

// The queue is down when the payment commits: the event waits in the
// outbox, the publisher logs the outage once and its end once, and the
// badge is granted once NATS is back.
func TestQueueDown(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	pub := e.publisher(t, nil)
	e.pay.EventsCommitted = pub.Nudge

	e.stopNATS(t)
	u, p := e.buyBadge(t, "ada")
	testwait.RetryUntil(t, 20*time.Second, func() error { // failed publishes, the event kept
		if st := pub.Status(); !st.QueueDown || st.PublishFailures < 2 || st.Pending != 1 {
			return fmt.Errorf("publisher status %+v, want the queue down, several failures, 1 pending", st)
		}
		return nil
	})
	if n := e.logs.count("queue unreachable"); n != 1 {
		t.Errorf("logged the queue unreachable %d times over %d failures, want once", n, pub.Status().PublishFailures)
	}

	e.startNATS(t)
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	e.waitOutboxEmpty(t)
	e.wantGrants(t, 1)
	if n := e.logs.count("queue reachable again"); n != 1 {
		t.Errorf("logged the queue reachable again %d times, want once", n)
	}
	if st := pub.Status(); st.QueueDown || st.Published != 1 {
		t.Errorf("publisher status %+v, want the queue up and 1 published", st)
	}
	if st := sub.Status().Subscriptions[0]; st.Handled != 1 {
		t.Errorf("subscription status %+v, want 1 handled", st)
	}
}

// An event that can never be applied is dropped, not retried forever, and
// does not hold up the events after it.
func TestBadEventDropped(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	ctx := context.Background()
	if _, err := e.stream.Publish(ctx, svc.EventBadgeGranted, "garbage", []byte("not json")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	bad := svc.NewEvent("payments", svc.EventBadgeGranted, time.Now(), "not an object")
	if _, err := e.payStore.Txn(ctx, e.pay.Outbox().Put(bad)); err != nil {
		t.Fatal(err)
	}
	pub := e.publisher(t, nil)
	e.pay.EventsCommitted = pub.Nudge
	u, p := e.buyBadge(t, "ada")
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	testwait.RetryUntil(t, 20*time.Second, func() error { // both bad events dropped
		if st := sub.Status().Subscriptions[0]; st.Rejected != 2 || st.Handled != 1 {
			return fmt.Errorf("subscription status %+v, want 2 rejected, 1 handled", st)
		}
		return nil
	})
	e.wantGrants(t, 1)
}

// Without a nudge (the instance that committed died before it could), the
// sweep publishes the event.
func TestSweepPublishesWithoutNudge(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	pub := e.publisher(t, nil)
	testwait.RetryUntil(t, 10*time.Second, func() error { // the first pass over the empty outbox done
		if st := pub.Status(); st.Pending != 0 || st.QueueDown || st.StoreDown {
			return fmt.Errorf("publisher status %+v", st)
		}
		return nil
	})
	u, p := e.buyBadge(t, "ada") // EventsCommitted is nil: nobody nudges
	e.waitBadge(t, u, p)
	waitHandled(t, sub, 1)
	e.waitOutboxEmpty(t)
	e.wantGrants(t, 1)
}

// Two instances of the payments service each publish the one outbox: every
// event is stored once in the stream and granted once.
func TestTwoPublishersOneOutbox(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	a, b := e.publisher(t, nil), e.publisher(t, nil)
	e.pay.EventsCommitted = func() { a.Nudge(); b.Nudge() }
	var want []string
	for i := range 5 {
		u, p := e.buyBadge(t, fmt.Sprintf("user%d", i))
		e.waitBadge(t, u, p)
		want = append(want, p.EventID)
	}
	waitHandled(t, sub, 5)
	e.waitOutboxEmpty(t)
	if got := e.streamIDs(t); !slices.Equal(got, want) {
		t.Errorf("stream holds events %q, want %q", got, want)
	}
	e.wantGrants(t, 5)
	sa, sb := a.Status(), b.Status()
	if got := sa.Published - sa.Duplicates + sb.Published - sb.Duplicates; got != 5 {
		t.Errorf("first publishes = %d (statuses %+v, %+v), want 5", got, sa, sb)
	}
}
