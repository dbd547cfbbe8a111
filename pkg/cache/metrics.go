package cache

import "github.com/prometheus/client_golang/prometheus"

// collector reads the cache's figures when Prometheus scrapes, so the
// request path pays nothing for metrics beyond the counters it keeps anyway.
type collector struct{ s *Server }

var (
	descKeys        = prometheus.NewDesc("scalestack_cache_keys", "Keys held, including expired ones not yet removed.", nil, nil)
	descBytes       = prometheus.NewDesc("scalestack_cache_bytes", "Bytes accounted to keys and values, per-entry overhead included.", nil, nil)
	descMaxBytes    = prometheus.NewDesc("scalestack_cache_max_bytes", "The byte budget (--cache-max-bytes).", nil, nil)
	descHits        = prometheus.NewDesc("scalestack_cache_hits_total", "Reads that found a live key.", nil, nil)
	descMisses      = prometheus.NewDesc("scalestack_cache_misses_total", "Reads that found no live key.", nil, nil)
	descEvictions   = prometheus.NewDesc("scalestack_cache_evictions_total", "Keys evicted to stay within the byte budget.", nil, nil)
	descExpired     = prometheus.NewDesc("scalestack_cache_expired_total", "Keys removed because their TTL passed.", nil, nil)
	descConns       = prometheus.NewDesc("scalestack_cache_connections", "Open client connections.", nil, nil)
	descConnsTotal  = prometheus.NewDesc("scalestack_cache_connections_total", "Client connections accepted.", nil, nil)
	descConnsRefuse = prometheus.NewDesc("scalestack_cache_rejected_connections_total", "Connections refused at --cache-max-clients.", nil, nil)
	descCommands    = prometheus.NewDesc("scalestack_cache_commands_total", "Commands executed.", nil, nil)
	descAuthFails   = prometheus.NewDesc("scalestack_cache_auth_failures_total", "AUTH commands with a wrong password.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeys, descBytes, descMaxBytes, descHits, descMisses,
		descEvictions, descExpired, descConns, descConnsTotal, descConnsRefuse, descCommands, descAuthFails} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	t := s.store.totals()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descKeys, float64(t.keys))
	gauge(descBytes, float64(t.bytes))
	gauge(descMaxBytes, float64(s.cfg.MaxBytes))
	counter(descHits, float64(t.stats.Hits))
	counter(descMisses, float64(t.stats.Misses))
	counter(descEvictions, float64(t.stats.Evictions))
	counter(descExpired, float64(t.stats.Expired))
	gauge(descConns, float64(s.connsOpen.Load()))
	counter(descConnsTotal, float64(s.connsTotal.Load()))
	counter(descConnsRefuse, float64(s.connsRefuse.Load()))
	counter(descCommands, float64(s.commands.Load()))
	counter(descAuthFails, float64(s.authFailures.Load()))
}
