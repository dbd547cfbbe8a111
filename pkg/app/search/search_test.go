package search_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/search"
)

func TestTerms(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"The Quick, quick fox!", "[quick fox]"},
		{"Go1.26 and bbolt-v1", "[go1 26 bbolt v1]"},
		{"a I x", "[]"},
		{"Café déjà-vu", "[café déjà vu]"},
	} {
		if got := fmt.Sprint(search.Terms(tc.in)); got != tc.want {
			t.Errorf("Terms(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestIndexQueryRemove(t *testing.T) {
	ctx := context.Background()
	s := search.New(apptest.NewMemStore())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Index(ctx, "p1", "Replication lag", []string{"db"}, "Replicas fall behind."))
	must(s.Index(ctx, "p2", "Cache stampede", []string{"db", "cache"}, "Coalesce misses."))
	query := func(q string) string {
		t.Helper()
		got, err := s.Query(ctx, q, 10)
		must(err)
		return fmt.Sprint(got)
	}
	for q, want := range map[string]string{"db": "[p2 p1]", "lag": "[p1]", "DB cache": "[p2]", "nothing": "[]"} {
		if got := query(q); got != want {
			t.Errorf("Query(%q) = %s, want %s", q, got, want)
		}
	}
	// Reindexing replaces the old words; removing drops them all.
	must(s.Index(ctx, "p1", "Failover", nil, "Promote a replica."))
	if got := query("lag"); got != "[]" {
		t.Errorf("after reindex Query(lag) = %s, want []", got)
	}
	must(s.Remove(ctx, "p2"))
	must(s.Remove(ctx, "p2"))
	if got := query("db"); got != "[]" {
		t.Errorf("after remove Query(db) = %s, want []", got)
	}
}
