package cdn_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/cdn"
)

// sink is a ResponseWriter that keeps nothing, so that a benchmark counts
// the edge's own work on a hit and not a recorder's.
type sink struct{ h http.Header }

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }
func (s *sink) WriteHeader(int)             {}

// BenchmarkHit measures the edge's handler on a hit, without the network.
// The network side is bench/edge/run.sh.
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(map[int]string{1 << 10: "1KB", 100 << 10: "100KB"}[size], func(b *testing.B) {
			body := strings.Repeat("x", size)
			o := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "public, max-age=3600")
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte(body))
			})
			e := newEdge(b, o.URL, nil)
			get(b, e, "/obj")
			req, _ := http.NewRequest(http.MethodGet, "/obj", nil)
			req.RequestURI = "/obj"
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &sink{h: make(http.Header, 16)}
				for pb.Next() {
					clear(w.h)
					e.ServeHTTP(w, req)
				}
			})
			b.StopTimer()
			if got := w0(e); got == 0 {
				b.Fatal("no hits")
			}
		})
	}
}

func w0(e *cdn.Edge) uint64 { return e.Snapshot().Hits }

// BenchmarkPass measures the edge's handler on a request passed to the
// origin (a GET with the bypass cookie), with and without a traceparent
// from the client: the outbound request the edge builds, the origin round
// trip on loopback and the streamed answer.
func BenchmarkPass(b *testing.B) {
	o := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok"))
	})
	e := newEdge(b, o.URL, nil)
	for _, tc := range []struct{ name, traceparent string }{
		{"no-traceparent", ""},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodPost, "/pass", nil)
			req.RequestURI = "/pass"
			req.RemoteAddr = "127.0.0.1:1234"
			if tc.traceparent != "" {
				req.Header.Set("Traceparent", tc.traceparent)
			}
			w := &sink{h: make(http.Header, 16)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				e.ServeHTTP(w, req)
			}
		})
	}
}
