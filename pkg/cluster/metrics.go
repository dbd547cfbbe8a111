package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cluster's Prometheus figures. Member counts and the health
// score are read from the Cluster at scrape time rather than kept in step
// with every event.
type metrics struct {
	c         *Cluster
	members   *prometheus.Desc
	health    *prometheus.Desc
	rejoins   prometheus.Counter
	coalesced prometheus.Counter
}

func newMetrics(c *Cluster) *metrics {
	return &metrics{
		c: c,
		members: prometheus.NewDesc("scalestack_cluster_members",
			"Known cluster members by status, this node included.", []string{"status"}, nil),
		health: prometheus.NewDesc("scalestack_cluster_health_score",
			"memberlist's awareness score: 0 is healthy; higher means this node misses its own probe deadlines and has stretched its probe interval.", nil, nil),
		rejoins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scalestack_cluster_rejoin_attempts_total",
			Help: "Attempts to re-join seeds because fewer members were alive than seen.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scalestack_cluster_events_coalesced_total",
			Help: "Membership events replaced by a newer one for the same member before a slow subscriber read them.",
		}),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.members
	ch <- m.health
	m.rejoins.Describe(ch)
	m.coalesced.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[Status]int{StatusAlive: 0, StatusDead: 0, StatusLeft: 0}
	for _, mem := range m.c.Members() {
		counts[mem.Status]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(n), string(s))
	}
	m.c.mu.Lock()
	list := m.c.list
	m.c.mu.Unlock()
	if list != nil {
		ch <- prometheus.MustNewConstMetric(m.health, prometheus.GaugeValue, float64(list.GetHealthScore()))
	}
	m.rejoins.Collect(ch)
	m.coalesced.Collect(ch)
}

func (m *metrics) register(r prometheus.Registerer) error { return r.Register(m) }

func (m *metrics) unregister(r prometheus.Registerer) { r.Unregister(m) }
