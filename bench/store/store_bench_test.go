// Package storebench_test measures the write path of pkg/store against raw
// bbolt doing the same user work, with fsync on every commit in both
// (bbolt's default, NoSync false). See README.md for the method and figures.
package storebench_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// writers is the number of goroutines per core in the concurrent benchmarks
// (b.SetParallelism), so 64 writers on 2 cores.
const writers = 32

// value is the payload of every write: a small JSON-ish record.
var value = []byte(`{"title":"hello","body":"a short blog post body of about a hundred bytes for benchmarking"}`)

func openStore(b *testing.B, opts boltdb.Options) *boltdb.DB {
	b.Helper()
	db, err := boltdb.Open(filepath.Join(b.TempDir(), "store.db"), opts)
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func openBolt(b *testing.B) *bolt.DB {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "bolt.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatalf("bolt.Open: %v", err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

func boltPut(tx *bolt.Tx, key string) error {
	bk, err := tx.CreateBucketIfNotExists([]byte("posts"))
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), value)
}

// BenchmarkSingleWrite: one writer, one put per transaction, waiting for
// each commit (fsync) before the next.
func BenchmarkSingleWrite(b *testing.B) {
	b.Run("scalestack", func(b *testing.B) {
		db := openStore(b, boltdb.Options{})
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := db.Txn(ctx, store.Put("posts", fmt.Sprintf("p%09d", i), value)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bbolt-update", func(b *testing.B) {
		db := openBolt(b)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			key := fmt.Sprintf("p%09d", i)
			if err := db.Update(func(tx *bolt.Tx) error { return boltPut(tx, key) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConcurrentWrite: 64 writers, one put per transaction each, every
// write acknowledged only after its commit is durable. scalestack groups
// them in its committer (default: no batch delay; scalestack-delay-1ms with
// Options.BatchDelay 1ms); bbolt-batch is bbolt's own grouping (db.Batch,
// default 10ms / 1000 window), bbolt-batch-1ms the same with a 1ms window;
// bbolt-update is one Update per write, which
// bbolt serialises, for scale.
func BenchmarkConcurrentWrite(b *testing.B) {
	for _, v := range []struct {
		name  string
		delay time.Duration
	}{{"scalestack", 0}, {"scalestack-delay-1ms", time.Millisecond}} {
		b.Run(v.name, func(b *testing.B) {
			db := openStore(b, boltdb.Options{BatchDelay: v.delay})
			ctx := context.Background()
			var seq atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(writers)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := db.Txn(ctx, store.Put("posts", fmt.Sprintf("p%09d", seq.Add(1)), value)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			st, err := db.Stats()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(st.Txns)/float64(max(st.Commits, 1)), "txns/commit")
		})
	}
	b.Run("bbolt-batch", func(b *testing.B) {
		db := openBolt(b)
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(writers)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("p%09d", seq.Add(1))
				if err := db.Batch(func(tx *bolt.Tx) error { return boltPut(tx, key) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("bbolt-batch-1ms", func(b *testing.B) {
		db := openBolt(b)
		db.MaxBatchDelay = time.Millisecond
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(writers)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("p%09d", seq.Add(1))
				if err := db.Batch(func(tx *bolt.Tx) error { return boltPut(tx, key) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("bbolt-update", func(b *testing.B) {
		db := openBolt(b)
		var seq atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(writers)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("p%09d", seq.Add(1))
				if err := db.Update(func(tx *bolt.Tx) error { return boltPut(tx, key) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkHTTPWrite is the whole write path of the store role: 64 writers
// through the Client, HTTP/JSON over loopback, group commit, fsync. It has
// no raw-bbolt twin; it shows what the network layer costs on top of
// BenchmarkConcurrentWrite/scalestack.
func BenchmarkHTTPWrite(b *testing.B) {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "bench"
	cfg.DataDir = b.TempDir()
	srv, err := server.New(cfg, server.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	c := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "bench", Addr: srv.Addr(), Primary: true}}})
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(writers)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Txn(ctx, store.Put("posts", fmt.Sprintf("p%09d", seq.Add(1)), value)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
