package events

import "github.com/prometheus/client_golang/prometheus"

// Both ends are prometheus.Collectors: the node registers them in its
// registry, and /metrics reads their Status when scraped. The service is
// a constant label, so a node running the ends of several services
// registers each.

type publisherDescs struct{ pending, published, duplicates, failures, storeErrors *prometheus.Desc }

func newPublisherDescs(service string) publisherDescs {
	l := prometheus.Labels{"service": service}
	return publisherDescs{
		pending: prometheus.NewDesc("scalestack_events_outbox_pending",
			"Events the publisher's last pass read from its service's outbox and did not publish.", nil, l),
		published: prometheus.NewDesc("scalestack_events_published_total",
			"Events JetStream acknowledged from this publisher, duplicates included.", nil, l),
		duplicates: prometheus.NewDesc("scalestack_events_duplicates_total",
			"Events published again and dropped by JetStream's duplicate window (a republish after a crash, another instance).", nil, l),
		failures: prometheus.NewDesc("scalestack_events_publish_failures_total",
			"Failed publishes of events; the event stays in the outbox.", nil, l),
		storeErrors: prometheus.NewDesc("scalestack_events_outbox_store_errors_total",
			"Failed reads and removes of the outbox.", nil, l),
	}
}

type subscriberDescs struct{ handled, retried, rejected, redelivered *prometheus.Desc }

func newSubscriberDescs(service string) subscriberDescs {
	l := prometheus.Labels{"service": service}
	typ := []string{"type"}
	return subscriberDescs{
		handled: prometheus.NewDesc("scalestack_events_handled_total",
			"Events the service's handler applied (or found applied) and acknowledged.", typ, l),
		retried: prometheus.NewDesc("scalestack_events_retried_total",
			"Handler failures; the event is delivered again after a backoff.", typ, l),
		rejected: prometheus.NewDesc("scalestack_events_rejected_total",
			"Events dropped because they can never be applied (logged at error).", typ, l),
		redelivered: prometheus.NewDesc("scalestack_events_redelivered_total",
			"Deliveries that were not an event's first.", typ, l),
	}
}

// Describe implements prometheus.Collector.
func (p *Publisher) Describe(ch chan<- *prometheus.Desc) {
	d := p.descs
	for _, d := range []*prometheus.Desc{d.pending, d.published, d.duplicates, d.failures, d.storeErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *Publisher) Collect(ch chan<- prometheus.Metric) {
	s, d := p.Status(), p.descs
	ch <- prometheus.MustNewConstMetric(d.pending, prometheus.GaugeValue, float64(s.Pending))
	for _, c := range []struct {
		d *prometheus.Desc
		v int64
	}{{d.published, s.Published}, {d.duplicates, s.Duplicates}, {d.failures, s.PublishFailures}, {d.storeErrors, s.StoreErrors}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
}

// Describe implements prometheus.Collector.
func (s *Subscriber) Describe(ch chan<- *prometheus.Desc) {
	d := s.descs
	for _, d := range []*prometheus.Desc{d.handled, d.retried, d.rejected, d.redelivered} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Subscriber) Collect(ch chan<- prometheus.Metric) {
	d := s.descs
	for _, sub := range s.Status().Subscriptions {
		for _, c := range []struct {
			d *prometheus.Desc
			v int64
		}{{d.handled, sub.Handled}, {d.retried, sub.Retried}, {d.rejected, sub.Rejected}, {d.redelivered, sub.Redelivered}} {
			ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v), sub.Type)
		}
	}
}
