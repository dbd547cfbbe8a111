package boltdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// mustOpenDB opens a DB in a temporary directory, closed at the end of the test.
func mustOpenDB(tb testing.TB, opts boltdb.Options) *boltdb.DB {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// mustTxn applies ops and fails the test on error.
func mustTxn(tb testing.TB, s store.Store, ops ...store.Op) uint64 {
	tb.Helper()
	lsn, err := s.Txn(context.Background(), ops...)
	if err != nil {
		tb.Fatalf("Txn(%v): %v", ops, err)
	}
	return lsn
}

// wantErr fails unless err wraps want.
func wantErr(tb testing.TB, what string, err, want error) {
	tb.Helper()
	if !errors.Is(err, want) {
		tb.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}
