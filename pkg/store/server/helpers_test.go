package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// mustOpenPath opens the database file at path (a closed server's), closed
// at the end of the test.
func mustOpenPath(tb testing.TB, path string) *boltdb.DB {
	tb.Helper()
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { _ = db.Close() })
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

// startServer runs a store Server on 127.0.0.1:0 with a temporary data
// directory; edit, if set, adjusts the config first.
func startServer(tb testing.TB, edit func(*server.Config)) *server.Server {
	tb.Helper()
	return startServerWith(tb, server.Deps{}, edit)
}

// startServerWith is startServer with deps.
func startServerWith(tb testing.TB, deps server.Deps, edit func(*server.Config)) *server.Server {
	tb.Helper()
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "store-1"
	cfg.DataDir = tb.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg, deps)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := srv.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return srv
}

// newClient returns a Client whose only node, the primary, is at addr.
func newClient(tb testing.TB, addr string) *store.Client {
	tb.Helper()
	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: "store-1", Addr: addr, Primary: true}},
		Timeout:  10 * time.Second,
	})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// wantErr fails unless err wraps want.
func wantErr(tb testing.TB, what string, err, want error) {
	tb.Helper()
	if !errors.Is(err, want) {
		tb.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}
