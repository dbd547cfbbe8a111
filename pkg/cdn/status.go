package cdn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Status is the edge's section of the node's /status page.
type Status struct {
	Node    string   `json:"node"`
	Addr    string   `json:"addr"`
	Ready   bool     `json:"ready"`
	Origins []string `json:"origins"`
	// Requests counts client requests. Hits, Stale, Misses and Revalidated
	// count responses by their X-Cache value; Passed counts the misses
	// that went past the cache on purpose (unsafe methods, ranges of what
	// is not held, the pass cookie). HitRatio is (Hits+Stale) over all
	// four: the share answered without waiting for an origin.
	Requests    uint64  `json:"requests"`
	Hits        uint64  `json:"hits"`
	Stale       uint64  `json:"stale"`
	Misses      uint64  `json:"misses"`
	Revalidated uint64  `json:"revalidated"`
	Passed      uint64  `json:"passed"`
	HitRatio    float64 `json:"hit_ratio"`
	// OriginRequests counts requests sent to an origin, OriginErrors those
	// that failed or got a 5xx; Coalesced the misses that waited for
	// another request's origin fetch instead of sending their own.
	OriginRequests uint64 `json:"origin_requests"`
	OriginErrors   uint64 `json:"origin_errors"`
	Coalesced      uint64 `json:"coalesced"`
	NotStored      uint64 `json:"not_stored"`
	TooLarge       uint64 `json:"too_large"`
	// Objects, Bytes and MaxBytes describe the store; Evictions counts
	// objects removed for room, Expired those past any use.
	Objects   int64  `json:"objects"`
	URLs      int    `json:"urls"`
	Keys      int    `json:"surrogate_keys"`
	Bytes     int64  `json:"bytes"`
	MaxBytes  int64  `json:"max_bytes"`
	Evictions uint64 `json:"evictions"`
	Expired   uint64 `json:"expired"`
	// Purges counts purge requests (HTTP and NATS), Invalidations the
	// unsafe requests that invalidated URLs, PurgedObjects what both
	// removed.
	Purges        uint64 `json:"purges"`
	Invalidations uint64 `json:"invalidations"`
	PurgedObjects uint64 `json:"purged_objects"`
	BytesServed   uint64 `json:"bytes_served"`
	// Connections counts client connections open now (at most MaxConns).
	Connections int `json:"connections"`
}

// Status returns the edge's live figures; the result marshals to JSON.
func (e *Edge) Status() any { return e.Snapshot() }

// Snapshot is Status with its concrete type, for tests and tools.
func (e *Edge) Snapshot() Status {
	st := e.store.stats()
	s := Status{
		Node:           e.cfg.NodeName,
		Addr:           e.Addr(),
		Ready:          e.Ready(),
		Requests:       e.requests.Load(),
		Hits:           e.hits.Load(),
		Stale:          e.stales.Load(),
		Misses:         e.misses.Load(),
		Revalidated:    e.revalidations.Load(),
		Passed:         e.passes.Load(),
		OriginRequests: e.originRequests.Load(),
		OriginErrors:   e.originErrors.Load(),
		Coalesced:      e.coalesced.Load(),
		NotStored:      e.notStored.Load(),
		TooLarge:       e.tooLarge.Load(),
		Objects:        st.objects,
		URLs:           st.urls,
		Keys:           st.tags,
		Bytes:          st.bytes,
		MaxBytes:       st.maxBytes,
		Evictions:      st.evictions,
		Expired:        st.expired,
		Purges:         e.purgeRequests.Load(),
		Invalidations:  e.invalidations.Load(),
		PurgedObjects:  e.purgedObjects.Load(),
		BytesServed:    e.bytesOut.Load(),
	}
	if e.srv != nil {
		e.srv.mu.Lock()
		s.Connections = len(e.srv.conns)
		e.srv.mu.Unlock()
	}
	if e.origin != nil {
		s.Origins = []string{e.cfg.Origin}
	} else {
		s.Origins = e.origins.Origins()
	}
	if total := s.Hits + s.Stale + s.Misses + s.Revalidated; total > 0 {
		s.HitRatio = float64(s.Hits+s.Stale) / float64(total)
	}
	return s
}

// collector exports the edge's figures to Prometheus at scrape time, from
// the counters Status reads, so the hit path pays for them once.
type collector struct{ e *Edge }

var (
	descResponses = prometheus.NewDesc("edge_responses_total", "Responses by X-Cache result (HIT, STALE, MISS, REVALIDATED).", []string{"cache"}, nil)
	descRequests  = prometheus.NewDesc("edge_requests_total", "Client requests received by the edge.", nil, nil)
	descPassed    = prometheus.NewDesc("edge_passed_total", "Requests sent past the cache (unsafe methods, uncached ranges, pass cookie).", nil, nil)
	descHitRatio  = prometheus.NewDesc("edge_hit_ratio", "Share of responses served without waiting for an origin (HIT and STALE), since start.", nil, nil)
	descOrigin    = prometheus.NewDesc("edge_origin_requests_total", "Requests sent to an origin.", nil, nil)
	descOriginErr = prometheus.NewDesc("edge_origin_errors_total", "Origin requests that failed or got a 500, 502, 503 or 504.", nil, nil)
	descCoalesced = prometheus.NewDesc("edge_coalesced_total", "Misses that waited for another request's origin fetch.", nil, nil)
	descNotStored = prometheus.NewDesc("edge_not_stored_total", "Origin responses not stored (forbidden by the caching rules or too large).", nil, nil)
	descObjects   = prometheus.NewDesc("edge_objects", "Stored responses.", nil, nil)
	descBytes     = prometheus.NewDesc("edge_bytes", "Bytes held by stored responses, overhead included.", nil, nil)
	descMaxBytes  = prometheus.NewDesc("edge_max_bytes", "Byte budget of stored responses.", nil, nil)
	descEvictions = prometheus.NewDesc("edge_evictions_total", "Stored responses evicted to fit the byte budget.", nil, nil)
	descExpired   = prometheus.NewDesc("edge_expired_total", "Stored responses removed past any use.", nil, nil)
	descPurges    = prometheus.NewDesc("edge_purges_total", "Purge requests received (HTTP and NATS).", nil, nil)
	descPurged    = prometheus.NewDesc("edge_purged_objects_total", "Stored responses removed by purges and invalidations.", nil, nil)
	descServed    = prometheus.NewDesc("edge_served_bytes_total", "Body bytes sent from stored responses.", nil, nil)
	descConns     = prometheus.NewDesc("edge_client_connections", "Client connections open (at most --edge-max-conns).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descResponses, descRequests, descPassed, descHitRatio, descOrigin, descOriginErr,
		descCoalesced, descNotStored, descObjects, descBytes, descMaxBytes, descEvictions, descExpired, descPurges, descPurged, descServed, descConns} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Snapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descResponses, s.Hits, Hit)
	counter(descResponses, s.Stale, Stale)
	counter(descResponses, s.Misses, Miss)
	counter(descResponses, s.Revalidated, Revalidated)
	counter(descRequests, s.Requests)
	counter(descPassed, s.Passed)
	gauge(descHitRatio, s.HitRatio)
	counter(descOrigin, s.OriginRequests)
	counter(descOriginErr, s.OriginErrors)
	counter(descCoalesced, s.Coalesced)
	counter(descNotStored, s.NotStored)
	gauge(descObjects, float64(s.Objects))
	gauge(descBytes, float64(s.Bytes))
	gauge(descMaxBytes, float64(s.MaxBytes))
	counter(descEvictions, s.Evictions)
	counter(descExpired, s.Expired)
	counter(descPurges, s.Purges)
	counter(descPurged, s.PurgedObjects)
	counter(descServed, s.BytesServed)
	gauge(descConns, float64(s.Connections))
}
