package kv_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// stores returns the real database and the in-memory double, so the paging
// logic is checked against both and the double is checked against the DB.
func stores(t *testing.T) map[string]store.Store {
	t.Helper()
	db, err := boltdb.Open(filepath.Join(t.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		t.Fatalf("boltdb.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return map[string]store.Store{"db": db, "mem": apptest.NewMemStore()}
}

func TestPage(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			// 450 keys under a/ (more than two chunks), a few around it.
			var ops []store.Op
			for i := 0; i < 450; i++ {
				ops = append(ops, store.Put("b", fmt.Sprintf("a/%04d", i), []byte{byte(i)}))
				if len(ops) == 100 {
					if _, err := st.Txn(ctx, ops...); err != nil {
						t.Fatalf("Txn: %v", err)
					}
					ops = nil
				}
			}
			ops = append(ops, store.Put("b", "a", nil), store.Put("b", "a0", nil), store.Put("b", "b/0", nil))
			if _, err := st.Txn(ctx, ops...); err != nil {
				t.Fatalf("Txn: %v", err)
			}
			for _, tc := range []struct {
				offset, limit int
				reverse       bool
				first, last   string
				n             int
				more          bool
			}{
				{0, 10, false, "a/0000", "a/0009", 10, true},
				{0, 10, true, "a/0449", "a/0440", 10, true},
				{395, 10, true, "a/0054", "a/0045", 10, true},
				{440, 10, false, "a/0440", "a/0449", 10, false},
				{445, 10, true, "a/0004", "a/0000", 5, false},
				{450, 10, false, "", "", 0, false},
			} {
				got, more, err := kv.Page(ctx, st, "b", "a/", tc.offset, tc.limit, tc.reverse)
				if err != nil {
					t.Fatalf("Page: %v", err)
				}
				if len(got) != tc.n || more != tc.more {
					t.Fatalf("Page(%d, %d, %v) = %d pairs, more %v; want %d, %v", tc.offset, tc.limit, tc.reverse, len(got), more, tc.n, tc.more)
				}
				if tc.n > 0 && (got[0].Key != tc.first || got[len(got)-1].Key != tc.last) {
					t.Errorf("Page(%d, %d, %v) = %s..%s, want %s..%s", tc.offset, tc.limit, tc.reverse, got[0].Key, got[len(got)-1].Key, tc.first, tc.last)
				}
			}
			all, err := kv.All(ctx, st, "b", "a/")
			if err != nil || len(all) != 450 {
				t.Errorf("All = %d pairs, %v; want 450", len(all), err)
			}
			if n, err := kv.Count(ctx, st, "missing", "x/"); err != nil || n != 0 {
				t.Errorf("Count of a missing bucket = %d, %v; want 0, nil", n, err)
			}
		})
	}
}
