package lb

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is the balancer's section of the node's /status page.
type Status struct {
	Node     string `json:"node"`
	Addr     string `json:"addr"`
	Ready    bool   `json:"ready"`
	Policy   string `json:"policy"`
	Sticky   bool   `json:"sticky"`
	InFlight int64  `json:"in_flight"`
	// Requests counts client requests; Retries the extra attempts sent to
	// another backend; RetriesDenied those the retry budget refused.
	Requests      uint64 `json:"requests"`
	Retries       uint64 `json:"retries"`
	RetriesDenied uint64 `json:"retries_denied"`
	// Answered502/503/504 count the error pages the balancer itself sent.
	Answered502 uint64 `json:"answered_502"`
	Answered503 uint64 `json:"answered_503"`
	Answered504 uint64 `json:"answered_504"`
	ClientGone  uint64 `json:"client_gone"`
	// Transport is how client connections are served: "N event loops" or
	// "goroutine per connection". HandedOff counts connections the loops
	// gave to a goroutine (a request body, a chunked response).
	Transport   string          `json:"transport"`
	Connections int64           `json:"client_connections"`
	HandedOff   uint64          `json:"handed_to_goroutines"`
	Backends    []BackendStatus `json:"backends"`
}

// BackendStatus is one backend's live figures.
type BackendStatus struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// State is healthy, unhealthy (failing active checks), ejected (by
	// passive checks, until EjectedFor has passed) or draining; "changing"
	// for the instant between a backend's recovery and its return to the
	// pool.
	State      string `json:"state"`
	Weight     int    `json:"weight"`
	InFlight   int64  `json:"in_flight"`
	Requests   uint64 `json:"requests"`
	Errors     uint64 `json:"errors"`
	Status5xx  uint64 `json:"status_5xx"`
	Ejections  uint64 `json:"ejections"`
	EjectedFor string `json:"ejected_for,omitempty"`
	// LastCheck is what the latest active health check found wrong.
	LastCheck string `json:"last_check,omitempty"`
	// LatencyP50Ms and LatencyP99Ms cover the last 10 to 20 seconds, from
	// sending the request to the end of the response body.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
}

// Status returns the balancer's live figures; the result marshals to JSON.
func (lb *LB) Status() any { return lb.Snapshot() }

// Snapshot is Status with its concrete type, for tests and tools.
func (lb *LB) Snapshot() Status {
	p := lb.pool.Load()
	s := Status{
		Node:          lb.cfg.NodeName,
		Addr:          lb.Addr(),
		Ready:         lb.Ready(),
		Policy:        string(lb.cfg.Policy),
		Sticky:        lb.cfg.Sticky,
		Requests:      lb.requests.Load(),
		Retries:       lb.retries.Load(),
		RetriesDenied: lb.retriesDenied.Load(),
		Answered502:   lb.failed[0].Load(),
		Answered503:   lb.failed[1].Load(),
		Answered504:   lb.failed[2].Load(),
		ClientGone:    lb.clientGone.Load(),
		Transport:     "goroutine per connection",
		Connections:   lb.connsOpen.Load(),
		HandedOff:     lb.handOffs.Load(),
		Backends:      make([]BackendStatus, 0, len(p.all)),
	}
	if n := len(lb.loops); n > 0 {
		s.Transport = strconv.Itoa(n) + " event loops"
	}
	now := time.Now().UnixNano()
	for _, b := range p.all {
		// The state is that of the published pool: a backend reported
		// draining or ejected gets no new request from that moment.
		state := b.state()
		if contains(p.eligible, b) {
			state = "healthy"
		} else if state == "healthy" {
			state = "changing"
		}
		bs := BackendStatus{
			Name:         b.name,
			Addr:         b.addr,
			State:        state,
			Weight:       b.weight,
			InFlight:     b.inflight.Load(),
			Requests:     b.requests.Load(),
			Errors:       b.errors.Load(),
			Status5xx:    b.responses5xx.Load(),
			Ejections:    b.ejectionsTotal.Load(),
			LatencyP50Ms: ms(quantile(0.50, &b.window[0], &b.window[1])),
			LatencyP99Ms: ms(quantile(0.99, &b.window[0], &b.window[1])),
		}
		bs.LastCheck, _ = b.lastCheck.Load().(string)
		if until := b.ejectedUntil.Load(); until > now {
			bs.EjectedFor = time.Duration(until - now).Round(time.Millisecond).String()
		}
		s.InFlight += bs.InFlight
		s.Backends = append(s.Backends, bs)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile merges histograms and returns quantile q of the merge.
func quantile(q float64, hs ...*latencyHistogram) time.Duration {
	var m latencyHistogram
	for _, h := range hs {
		for i := range h.counts {
			if c := h.counts[i].Load(); c != 0 {
				m.counts[i].Add(c)
			}
		}
	}
	return m.quantile(q)
}

// collector exports the balancer's figures to Prometheus at scrape time,
// from the same counters that Status reads, so the hot path pays for them
// once.
type collector struct{ lb *LB }

var (
	descRequests = prometheus.NewDesc("lb_requests_total", "Client requests received by the load balancer.", nil, nil)
	descRetries  = prometheus.NewDesc("lb_retries_total", "Attempts sent again to another backend.", nil, nil)
	descDenied   = prometheus.NewDesc("lb_retries_denied_total", "Retries refused by the retry budget.", nil, nil)
	descAnswered = prometheus.NewDesc("lb_error_responses_total", "Error pages sent by the load balancer itself, by status.", []string{"code"}, nil)
	descBReq     = prometheus.NewDesc("lb_backend_requests_total", "Attempts sent to a backend.", []string{"backend"}, nil)
	descBErr     = prometheus.NewDesc("lb_backend_errors_total", "Attempts to a backend that failed without a response.", []string{"backend"}, nil)
	descB5xx     = prometheus.NewDesc("lb_backend_5xx_total", "5xx responses from a backend.", []string{"backend"}, nil)
	descBEject   = prometheus.NewDesc("lb_backend_ejections_total", "Passive ejections of a backend.", []string{"backend"}, nil)
	descBFlight  = prometheus.NewDesc("lb_backend_in_flight", "Requests in flight to a backend.", []string{"backend"}, nil)
	descBState   = prometheus.NewDesc("lb_backend_state", "1 for the backend's current state (healthy, unhealthy, ejected, draining).", []string{"backend", "state"}, nil)
	descConns    = prometheus.NewDesc("lb_client_connections", "Client connections open.", nil, nil)
	descHandOffs = prometheus.NewDesc("lb_handoffs_total", "Client connections an event loop handed to a goroutine (a request body, a chunked response).", nil, nil)
	descBLat     = prometheus.NewDesc("lb_backend_response_seconds", "Time from sending a request to a backend to the end of its response.", []string{"backend"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descRetries, descDenied, descAnswered, descConns, descHandOffs, descBReq, descBErr, descB5xx, descBEject, descBFlight, descBState, descBLat} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	lb := c.lb
	ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(lb.requests.Load()))
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(lb.retries.Load()))
	ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(lb.retriesDenied.Load()))
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(lb.connsOpen.Load()))
	ch <- prometheus.MustNewConstMetric(descHandOffs, prometheus.CounterValue, float64(lb.handOffs.Load()))
	for i, code := range []string{"502", "503", "504"} {
		ch <- prometheus.MustNewConstMetric(descAnswered, prometheus.CounterValue, float64(lb.failed[i].Load()), code)
	}
	for _, b := range lb.pool.Load().all {
		ch <- prometheus.MustNewConstMetric(descBReq, prometheus.CounterValue, float64(b.requests.Load()), b.name)
		ch <- prometheus.MustNewConstMetric(descBErr, prometheus.CounterValue, float64(b.errors.Load()), b.name)
		ch <- prometheus.MustNewConstMetric(descB5xx, prometheus.CounterValue, float64(b.responses5xx.Load()), b.name)
		ch <- prometheus.MustNewConstMetric(descBEject, prometheus.CounterValue, float64(b.ejectionsTotal.Load()), b.name)
		ch <- prometheus.MustNewConstMetric(descBFlight, prometheus.GaugeValue, float64(b.inflight.Load()), b.name)
		state := b.state()
		for _, st := range []string{"healthy", "unhealthy", "ejected", "draining"} {
			v := 0.0
			if st == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descBState, prometheus.GaugeValue, v, b.name, st)
		}
		ch <- histogramMetric(&b.latency, b.name)
	}
}

// histogramMetric exports h with one bucket per power of two of
// microseconds (16µs to about 67s), the bounds at which its finer buckets
// align exactly.
func histogramMetric(h *latencyHistogram, name string) prometheus.Metric {
	buckets := make(map[float64]uint64, 23)
	var cum uint64
	for i := 0; i < histBuckets; i++ {
		cum += h.counts[i].Load()
		if up := histUpper(i); up >= 16 && up&(up-1) == 0 && up <= 1<<26 {
			buckets[float64(up)/1e6] = cum
		}
	}
	var total uint64
	for i := range h.counts {
		total += h.counts[i].Load()
	}
	return prometheus.MustNewConstHistogram(descBLat, total, float64(h.sumNs.Load())/1e9, buckets, name)
}
