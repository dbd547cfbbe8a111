package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchStack is a stack over the real boltdb.DB with 30 posts of a few
// paragraphs each, written by one author.
func benchStack(b *testing.B) (*stack, []string) {
	b.Helper()
	s := newStack(b)
	c := s.client(b)
	c.signup("bench")
	para := strings.Repeat("Scaling is mostly about *where state lives*. ", 12)
	var ids []string
	for i := 0; i < 30; i++ {
		body := fmt.Sprintf("## Part %d\n\n%s\n\n%s\n\n- one\n- two\n", i, para, para)
		ids = append(ids, c.post(fmt.Sprintf("Post number %d", i), body, "bench", "go")["id"].(string))
	}
	return s, ids
}

// BenchmarkHomePage serves the anonymous home page in-process (no network):
// one feed scan and a page of post reads, rendered.
func BenchmarkHomePage(b *testing.B) {
	s, _ := benchStack(b)
	h := s.App.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET / = %d", rec.Code)
		}
	}
}

// BenchmarkPostPage serves an anonymous post page. With --jobs=inline each
// view is counted inside the request, so this includes one store write
// (an fsync) per page: the cost stage 8 moves to a worker.
func BenchmarkPostPage(b *testing.B) {
	s, ids := benchStack(b)
	h := s.App.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/p/"+ids[i%len(ids)], nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET post = %d", rec.Code)
		}
		i++
	}
}
