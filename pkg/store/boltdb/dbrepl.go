package boltdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/scalestack/scalestack/internal/durable"
	"github.com/scalestack/scalestack/pkg/store"
)

// This file holds what replication needs of a DB beyond the Store API:
// applying entries shipped from a primary, the epoch, consistent snapshots
// and installing one, and a signal of new commits.

// Changed returns a channel that is closed at the next commit that moves the
// LSN (local or applied). Log shippers wait on it instead of polling.
func (db *DB) Changed() <-chan struct{} {
	db.changedMu.Lock()
	defer db.changedMu.Unlock()
	return db.changed
}

func (db *DB) notify() {
	db.changedMu.Lock()
	close(db.changed)
	db.changed = make(chan struct{})
	db.changedMu.Unlock()
}

// SetWriteGate installs gate, asked before every commit of local
// transactions (Txn); when it returns an error the batch fails with it and
// nothing is written. Nil removes the gate. A replica's gate refuses every
// write; a primary's refuses once its lease can no longer be trusted, which
// is what keeps an old primary from writing after a new one took over.
func (db *DB) SetWriteGate(gate func() error) {
	if gate == nil {
		db.gate.Store(nil)
		return
	}
	db.gate.Store(&gate)
}

// SetEpoch raises the stored epoch to e (never lowers it). A new primary
// calls it with the epoch of its lease before it writes, so each of its log
// entries carries the new epoch.
func (db *DB) SetEpoch(e uint64) error {
	db.swap.RLock()
	defer db.swap.RUnlock()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if getU64(meta.Get(metaEpoch)) >= e {
			return nil
		}
		return meta.Put(metaEpoch, u64(e))
	})
	if err != nil {
		return fmt.Errorf("set epoch %d: %w", e, err)
	}
	if e > db.epoch.Load() {
		db.epoch.Store(e)
	}
	return nil
}

// EntryEpoch returns the epoch of the log entry at lsn, with ok false when
// the entry is not in the log (trimmed, or lsn is 0 or past the end). Two
// logs that hold the same (LSN, epoch) hold the same history up to it: one
// primary writes each epoch, and replicas only append what it sent.
func (db *DB) EntryEpoch(lsn uint64) (epoch uint64, ok bool, err error) {
	if lsn == 0 {
		return 0, false, nil
	}
	err = db.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(logBucket).Get(u64(lsn))
		if v == nil {
			return nil
		}
		e, err := DecodeEntry(v)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", lsn, err)
		}
		epoch, ok = e.Epoch, true
		return nil
	})
	return epoch, ok, err
}

// ApplyEntries writes entries shipped by the primary of epoch primaryEpoch
// in one bbolt commit: the data, the log entries and the LSN advance
// together. Entries must follow the DB's LSN without a gap.
//
// Fencing: if the DB has meanwhile seen an epoch newer than primaryEpoch,
// that primary has been deposed and nothing it sends is applied. The
// entries themselves may be older than the DB's epoch: a new primary ships
// the entries of earlier epochs that this replica missed, each with the
// epoch it was written in. Within the log, epochs never decrease, and none
// is newer than the primary's. The DB's epoch is raised to the newest
// entry's.
func (db *DB) ApplyEntries(entries []Entry, primaryEpoch uint64) error {
	if len(entries) == 0 {
		return nil
	}
	var last, epoch uint64
	db.swap.RLock()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		logb := tx.Bucket(logBucket)
		logb.FillPercent = 1.0
		lsn := getU64(meta.Get(metaLSN))
		epoch = getU64(meta.Get(metaEpoch))
		if epoch > primaryEpoch {
			return fmt.Errorf("entries from the primary of epoch %d, store has seen epoch %d: %w", primaryEpoch, epoch, store.ErrStaleEpoch)
		}
		prev := uint64(0) // epoch of the last entry in the log
		if v := logb.Get(u64(lsn)); v != nil {
			pe, err := DecodeEntry(v)
			if err != nil {
				return fmt.Errorf("log entry %d: %w", lsn, err)
			}
			prev = pe.Epoch
		}
		for _, e := range entries {
			if e.LSN != lsn+1 {
				return fmt.Errorf("apply entry %d after %d: %w", e.LSN, lsn, store.ErrInvalid)
			}
			if e.Epoch < prev || e.Epoch > primaryEpoch {
				return fmt.Errorf("apply entry %d of epoch %d after one of epoch %d, from the primary of epoch %d: %w", e.LSN, e.Epoch, prev, primaryEpoch, store.ErrInvalid)
			}
			prev = e.Epoch
			epoch = max(epoch, e.Epoch)
			if err := applyOps(tx, e.Ops); err != nil {
				return err
			}
			if err := logb.Put(u64(e.LSN), EncodeEntry(e)); err != nil {
				return fmt.Errorf("append log entry %d: %w", e.LSN, err)
			}
			lsn = e.LSN
		}
		if err := meta.Put(metaLSN, u64(lsn)); err != nil {
			return err
		}
		if err := meta.Put(metaEpoch, u64(epoch)); err != nil {
			return err
		}
		last = lsn
		return trimLog(logb, lsn, db.opts.LogRetention)
	})
	db.swap.RUnlock()
	if err != nil {
		return fmt.Errorf("apply entries: %w", err)
	}
	db.lsn.Store(last)
	if epoch > db.epoch.Load() {
		db.epoch.Store(epoch)
	}
	db.commits.Add(1)
	db.notify()
	return nil
}

// WriteSnapshot writes a consistent copy of the whole file to w (bbolt
// Tx.WriteTo inside one read transaction) and returns the LSN and epoch it
// holds. begin, if set, is called with them before the first byte.
func (db *DB) WriteSnapshot(w io.Writer, begin func(lsn, epoch uint64, size int64) error) (lsn, epoch uint64, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		lsn, epoch = getU64(meta.Get(metaLSN)), getU64(meta.Get(metaEpoch))
		if begin != nil {
			if err := begin(lsn, epoch, tx.Size()); err != nil {
				return err
			}
		}
		_, err := tx.WriteTo(w)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("write snapshot: %w", err)
	}
	return lsn, epoch, nil
}

// Restore replaces the DB's file by the snapshot file at path (on the same
// file system), atomically by rename, and reopens it; reads wait while it
// runs. The epoch never goes down: if the DB had seen a newer one, it is
// kept. Only a replica restores: its committer has nothing to write.
func (db *DB) Restore(path string) error {
	if err := checkSnapshotFile(path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db.swap.Lock()
	defer db.swap.Unlock()
	seen := db.epoch.Load()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("restore: close: %w", err)
	}
	if err := os.Rename(path, db.path); err != nil {
		return fmt.Errorf("restore: rename: %w", err)
	}
	_ = durable.SyncDir(filepath.Dir(db.path)) // make the rename itself durable
	bdb, err := bolt.Open(db.path, 0o600, &bolt.Options{Timeout: db.opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("restore: reopen: %w", err)
	}
	db.bolt = bdb
	if err := db.recover(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if seen > db.epoch.Load() {
		if err := db.bolt.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(metaBucket).Put(metaEpoch, u64(seen))
		}); err != nil {
			return fmt.Errorf("restore: keep epoch: %w", err)
		}
		db.epoch.Store(seen)
	}
	db.log.Info("store restored from snapshot", "lsn", db.LSN(), "epoch", db.Epoch())
	db.notify()
	return nil
}

// checkSnapshotFile opens a received snapshot read-only and checks that it
// is a store file whose meta and log agree, before it replaces anything.
func checkSnapshotFile(path string) error {
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 1})
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", path, err)
	}
	defer b.Close()
	return b.View(func(tx *bolt.Tx) error {
		meta, logb := tx.Bucket(metaBucket), tx.Bucket(logBucket)
		if meta == nil || logb == nil {
			return fmt.Errorf("snapshot %s: not a store file", path)
		}
		lsn := getU64(meta.Get(metaLSN))
		if last, _ := logb.Cursor().Last(); last != nil && binary.BigEndian.Uint64(last) != lsn {
			return fmt.Errorf("snapshot %s: log ends at %d, meta says %d", path, binary.BigEndian.Uint64(last), lsn)
		}
		return nil
	})
}

// Checksum returns a CRC-32C over every user bucket's keys and values in
// order, with the LSN it reflects: two stores with the same content have the
// same checksum. Tests and operators use it to check convergence.
func (db *DB) Checksum(ctx context.Context) (sum uint32, lsn uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	var buf bytes.Buffer
	err = db.view(func(tx *bolt.Tx) error {
		lsn = getU64(tx.Bucket(metaBucket).Get(metaLSN))
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bytes.HasPrefix(name, []byte(store.ReservedPrefix)) {
				return nil
			}
			buf.Write(binary.AppendUvarint(nil, uint64(len(name))))
			buf.Write(name)
			return b.ForEach(func(k, v []byte) error {
				buf.Write(binary.AppendUvarint(nil, uint64(len(k))))
				buf.Write(k)
				buf.Write(binary.AppendUvarint(nil, uint64(len(v))))
				buf.Write(v)
				return nil
			})
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("checksum: %w", err)
	}
	return crc32.Checksum(buf.Bytes(), crcTable), lsn, nil
}
