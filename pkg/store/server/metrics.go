package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store role's Prometheus collectors. They always exist, so
// the code records without nil checks; they are registered only when the
// Config names a Registerer.
type metrics struct {
	requests   *prometheus.CounterVec
	commitTime prometheus.Histogram
	batchTxns  prometheus.Histogram
	lsn        prometheus.GaugeFunc
}

func newMetrics(lsn func() uint64) *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "scalestack", Subsystem: "store", Name: "requests_total",
			Help: "HTTP requests to the store API, by route and status code.",
		}, []string{"route", "code"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "scalestack", Subsystem: "store", Name: "commit_seconds",
			Help:    "Time of one group commit (one bbolt transaction and its fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs .. 3.3s
		}),
		batchTxns: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "scalestack", Subsystem: "store", Name: "commit_batch_txns",
			Help:    "Transactions grouped into one commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
		}),
		lsn: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "scalestack", Subsystem: "store", Name: "lsn",
			Help: "LSN of the last committed transaction.",
		}, func() float64 { return float64(lsn()) }),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.commitTime, m.batchTxns, m.lsn} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observeCommit is the DB's OnCommit hook.
func (m *metrics) observeCommit(txns int, d time.Duration) {
	m.commitTime.Observe(d.Seconds())
	m.batchTxns.Observe(float64(txns))
}
