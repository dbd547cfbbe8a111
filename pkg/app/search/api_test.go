package search_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc/rpctest"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The client is what the gateway gives the app as its Search.
var _ app.Search = (*search.Client)(nil)

// overTheWire serves a search service over a real store on an httptest
// server and returns an rpc client of it, and the server's URL.
func overTheWire(tb testing.TB) (*rpc.Client, string) {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	cl, hs := rpctest.Serve(tb, rpc.ServerConfig{Service: search.Name, Instance: "search-1"},
		func(srv *rpc.Server) { search.Register(srv, search.New(db)) })
	return cl, hs.URL
}

// The client over the wire does what the service does in-process: index
// twice is one entry, reindexing replaces the words, remove twice is not
// an error, hits come newest first; the server refuses what it cannot key.
func TestAPIOverTheWire(t *testing.T) {
	cl, url := overTheWire(t)
	c := search.NewClient(cl)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)
	older, newer := ids.At(base), ids.At(base.Add(time.Minute))
	query := func(q string, limit int) string {
		t.Helper()
		got, err := c.Query(ctx, q, limit)
		must(err)
		return fmt.Sprint(got)
	}

	for range 2 {
		must(c.Index(ctx, older, "Replication lag", []string{"db"}, "Replicas fall behind."))
	}
	must(c.Index(ctx, newer, "Cache stampede", []string{"db", "cache"}, "Coalesce misses."))
	for _, tt := range []struct {
		q     string
		limit int
		want  string
	}{
		{"db", 10, fmt.Sprint([]string{newer, older})},
		{"db", 1, fmt.Sprint([]string{newer})},
		{"lag", 10, fmt.Sprint([]string{older})},
		{"DB cache", 10, fmt.Sprint([]string{newer})},
		{"nothing", 10, "[]"},
		{"db", 0, "[]"}, // nothing asked, as in-process
	} {
		if got := query(tt.q, tt.limit); got != tt.want {
			t.Errorf("Query(%q, %d) = %s, want %s", tt.q, tt.limit, got, tt.want)
		}
	}

	must(c.Index(ctx, older, "Failover", nil, "Promote a replica."))
	if got := query("lag", 10); got != "[]" {
		t.Errorf("after the reindex, Query(lag) = %s, want []", got)
	}
	must(c.Remove(ctx, newer))
	must(c.Remove(ctx, newer))
	if got := query("db", 10); got != "[]" {
		t.Errorf("after the remove, Query(db) = %s, want []", got)
	}

	// What the server refuses, each as a field error.
	for _, tt := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"index of a post id with a slash", func() error { return c.Index(ctx, "db/"+older, "t", nil, "b") }, "post_id"},
		{"remove of an empty id", func() error { return c.Remove(ctx, "") }, "post_id"},
		{"query over the limit", func() error {
			_, err := rpc.Call(ctx, cl, search.QueryMethod, search.QueryRequest{Q: "db", Limit: search.MaxQueryLimit + 1})
			return err
		}, "limit"},
		{"query too long", func() error { _, err := c.Query(ctx, strings.Repeat("x", search.MaxQueryBytes+1), 10); return err }, "q"},
	} {
		var fe *svc.FieldError
		if err := tt.call(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s = %v, want a field error on %s", tt.name, err, tt.field)
		}
	}

	// The JSON docs/api.md shows, as curl sees it.
	resp, err := http.Post(url+rpc.Path(search.Name, "query"), "application/json", strings.NewReader(`{"q":"failover"}`))
	must(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `{"ids":["` + older + `"]}`; resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("POST /v1/search/query = %d %s, want 200 %s", resp.StatusCode, body, want)
	}
}
