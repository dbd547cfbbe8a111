// Package boltdb is the store's engine: one bbolt file per node with
// buckets, ordered scans and atomic transactions, and a log of every
// committed transaction. It implements store.Store; the store role
// (pkg/store/server) serves and replicates it.
//
// Writes are queued to one committer goroutine that groups concurrent
// transactions into a single bbolt commit (one fsync); each transaction
// still gets its own log sequence number (LSN), and its log Entry is written
// in the same bbolt transaction as its data, so data and log never
// disagree. A condition that fails fails only its own transaction. bbolt
// syncs on commit, so an acknowledged transaction survives kill -9.
//
// # Log and epochs
//
// The bucket "_log" maps each LSN (8 bytes, big endian) to an Entry encoded
// by EncodeEntry: the LSN, the epoch of the primary that wrote it and the
// puts and deletes in order, protected by a CRC-32C. The bucket "_meta" holds
// the last LSN and the epoch. Only the last Options.LogRetention entries are
// kept, trimmed in the same commits that add entries. DB.ReadLog reads
// entries from an LSN on; replication streams from it. Bucket names
// starting with "_" (store.ReservedPrefix) are reserved.
package boltdb
