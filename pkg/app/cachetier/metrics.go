package cachetier

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tier's counters: plain atomics, read by Stats and
// exported to Prometheus by Collect when registered.
type metrics struct {
	t                                   *Tier
	errors, invalidations, fills, loads atomic.Uint64
	rejected                            atomic.Uint64

	mu     sync.Mutex
	byKind map[string]*[4]atomic.Uint64 // lookups by kind of key, then Result

	lookupsDesc, errorsDesc, invalidationsDesc, fillsDesc, loadsDesc, nodesUpDesc, rejectedDesc *prometheus.Desc
}

func newMetrics(t *Tier) *metrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("scalestack_app_cache_"+name, help, labels, nil)
	}
	return &metrics{
		t:      t,
		byKind: map[string]*[4]atomic.Uint64{},
		lookupsDesc: desc("lookups_total",
			"Cache lookups by the app, by kind of key (post, feed, frag, comments, sess) and result (hit, miss, bypass).",
			"kind", "result"),
		errorsDesc:        desc("errors_total", "Failed calls from the app to cache nodes."),
		invalidationsDesc: desc("invalidations_total", "Keys invalidated by the app's writes."),
		fillsDesc:         desc("fills_total", "Values the app put in the cache after a miss."),
		loadsDesc:         desc("loads_total", "Loads from the store after a miss or bypass (one per group of coalesced readers)."),
		nodesUpDesc:       desc("nodes_up", "Cache nodes in the app's ring (breaker closed)."),
		rejectedDesc: desc("rejected_total",
			"Entries read from the cache that failed authentication (forged, damaged, or another client's); each was served from the store."),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error { return reg.Register(m) }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.lookupsDesc, m.errorsDesc, m.invalidationsDesc, m.fillsDesc, m.loadsDesc, m.nodesUpDesc, m.rejectedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	kinds := make([]string, 0, len(m.byKind))
	for k := range m.byKind {
		kinds = append(kinds, k)
	}
	m.mu.Unlock()
	slices.Sort(kinds)
	for _, k := range kinds {
		cs := m.counters(k)
		for _, r := range []Result{Hit, Miss, Bypass} {
			ch <- prometheus.MustNewConstMetric(m.lookupsDesc, prometheus.CounterValue, float64(cs[r].Load()), k, lowerResult(r))
		}
	}
	ch <- prometheus.MustNewConstMetric(m.errorsDesc, prometheus.CounterValue, float64(m.errors.Load()))
	ch <- prometheus.MustNewConstMetric(m.invalidationsDesc, prometheus.CounterValue, float64(m.invalidations.Load()))
	ch <- prometheus.MustNewConstMetric(m.fillsDesc, prometheus.CounterValue, float64(m.fills.Load()))
	ch <- prometheus.MustNewConstMetric(m.loadsDesc, prometheus.CounterValue, float64(m.loads.Load()))
	ch <- prometheus.MustNewConstMetric(m.rejectedDesc, prometheus.CounterValue, float64(m.rejected.Load()))
	up := 0
	if v := m.t.view.Load(); v != nil {
		up = len(v.up)
	}
	ch <- prometheus.MustNewConstMetric(m.nodesUpDesc, prometheus.GaugeValue, float64(up))
}

func (m *metrics) counters(kind string) *[4]atomic.Uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := m.byKind[kind]
	if cs == nil {
		cs = &[4]atomic.Uint64{}
		m.byKind[kind] = cs
	}
	return cs
}

func (m *metrics) lookup(kind string, r Result) { m.counters(kind)[r].Add(1) }

func lowerResult(r Result) string {
	switch r {
	case Hit:
		return "hit"
	case Miss:
		return "miss"
	}
	return "bypass"
}

func (m *metrics) snapshot() Stats {
	var s Stats
	m.mu.Lock()
	for _, cs := range m.byKind {
		s.Hits += cs[Hit].Load()
		s.Misses += cs[Miss].Load()
		s.Bypasses += cs[Bypass].Load()
	}
	m.mu.Unlock()
	if total := s.Hits + s.Misses + s.Bypasses; total > 0 {
		s.HitRatio = float64(s.Hits) / float64(total)
	}
	s.Fills = m.fills.Load()
	s.Loads = m.loads.Load()
	s.Errors = m.errors.Load()
	s.Invalidations = m.invalidations.Load()
	s.Rejected = m.rejected.Load()
	return s
}
