package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/store"
)

// BenchmarkHomePageCache serves the anonymous home page in-process with the
// cache tier off and on (warm: every request a HIT), over the store in the
// same process (stage 1's shape) and over the network (store role on
// loopback, as from stage 2), with one cache node on loopback. Compare
// on/off within a store shape:
//
//	go test ./pkg/app -run '^$' -bench HomePageCache
func BenchmarkHomePageCache(b *testing.B) {
	for _, where := range []string{"db", "server"} {
		for _, mode := range []string{"off", "on"} {
			b.Run(where+"/cache="+mode, func(b *testing.B) { benchHome(b, where, mode == "on") })
		}
	}
}

func benchHome(b *testing.B, where string, cached bool) {
	var st store.Store = openDB(b)
	if where == "server" {
		srv := startStoreServer(b, "127.0.0.1:0", b.TempDir())
		b.Cleanup(func() { srv.Close() })
		c := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "primary-1", Addr: srv.Addr(), Primary: true}}})
		b.Cleanup(func() { c.Close() })
		st = c
	}
	var s *stack
	if cached {
		s = newCacheStack(b, "127.0.0.1:0", st, cacheNodes(startCache(b, "127.0.0.1:0")), func(c *app.Config, d *app.Deps) {
			c.CacheTier.Timeout = 100 * time.Millisecond
			c.CacheTier.TombstoneTTL = 500 * time.Millisecond
		})
	} else {
		s = newStackOn(b, st)
	}
	c := s.client(b)
	c.signup("bench")
	para := strings.Repeat("Scaling is mostly about *where state lives*. ", 12)
	for i := 0; i < 30; i++ {
		c.post(fmt.Sprintf("Post number %d", i), fmt.Sprintf("## Part %d\n\n%s\n\n%s\n", i, para, para), "bench", "go")
	}
	h := s.App.Handler()
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET / = %d", rec.Code)
		}
		return rec
	}
	if cached {
		testwait.Until(b, 10*time.Second, "a warm cache", func() bool { return get().Header().Get("X-App-Cache") == "HIT" })
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	b.StopTimer()
	if cached {
		if st := cacheStatus(b, s).CacheTier; st.Errors > 0 {
			b.Logf("cache errors during the run: %d", st.Errors)
		}
	}
}
