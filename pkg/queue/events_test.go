package queue_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/pkg/queue"
)

// standaloneEvents starts a standalone server and returns an EventStream on it.
func standaloneEvents(t testing.TB) (*queue.EventStream, *queue.Conn) {
	t.Helper()
	cfg := serverConfig(t, "solo", "127.0.0.1")
	cfg.Standalone = true
	cfg.Routes = nil
	s := mustOpen(t, cfg)
	c := mustConnect(t, "events", staticServers(s.ClientURL()))
	es, err := queue.NewEventStream(c.JetStream(), queue.DefaultEventsConfig())
	if err != nil {
		t.Fatal(err)
	}
	return es, c
}

// One event reaches every service that consumes its type, each through
// its own durable consumer; a second publish of its id is dropped.
func TestEventsReachEveryConsumingService(t *testing.T) {
	es, c := standaloneEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, want := range []bool{false, true} {
		dup, err := es.Publish(ctx, "post.published", "ev-1", []byte(`{"id":"ev-1"}`))
		if err != nil || dup != want {
			t.Fatalf("Publish #%d = %v, %v; want %v, nil", i+1, dup, err, want)
		}
	}
	if _, err := es.Publish(ctx, "badge.granted", "ev-2", []byte(`{"id":"ev-2"}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := streamMessages(t, c.JetStream(), "EVENTS"), []string{`{"id":"ev-1"}`, `{"id":"ev-2"}`}; !slices.Equal(got, want) {
		t.Errorf("stream holds %q, want %q", got, want)
	}
	for _, service := range []string{"search", "notifications"} {
		cons, err := es.Consumer(ctx, service, "post.published")
		if err != nil {
			t.Fatalf("Consumer(%s): %v", service, err)
		}
		if got, want := cons.CachedInfo().Name, queue.EventConsumerName(service, "post.published"); got != want || want != service+"--post_published" {
			t.Errorf("consumer name = %q, want %q", got, want)
		}
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for m := range batch.Messages() {
			ids = append(ids, m.Headers().Get(queue.HeaderEventID))
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if want := []string{"ev-1"}; !slices.Equal(ids, want) {
			t.Errorf("%s fetched events %q, want %q (its type only, once)", service, ids, want)
		}
	}
	if _, err := es.Publish(ctx, "post.*", "x", nil); !errors.Is(err, queue.ErrBadEventType) {
		t.Errorf("Publish(post.*) = %v, want ErrBadEventType", err)
	}
	if _, err := es.Consumer(ctx, "no.dots", "post.published"); !errors.Is(err, queue.ErrBadEventType) {
		t.Errorf("Consumer(no.dots) = %v, want ErrBadEventType", err)
	}
}

func TestEventsConfigValidate(t *testing.T) {
	for name, edit := range map[string]func(*queue.EventsConfig){
		"no stream":            func(c *queue.EventsConfig) { c.Stream = "" },
		"duplicates too short": func(c *queue.EventsConfig) { c.Duplicates = time.Millisecond },
		"max age under window": func(c *queue.EventsConfig) { c.MaxAge = time.Minute },
		"ack wait":             func(c *queue.EventsConfig) { c.AckWait = 0 },
		"max ack pending":      func(c *queue.EventsConfig) { c.MaxAckPending = 0 },
	} {
		c := queue.DefaultEventsConfig()
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate = nil, want an error", name)
		}
	}
	c := queue.DefaultEventsConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: Validate = %v", err)
	}
}
