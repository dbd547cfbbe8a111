package boltdb

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Position is how far a store file's log reaches: what a launcher compares
// to find the store node with the newest data before any node runs.
type Position struct {
	// LSN is the last committed log sequence number (0: nothing written).
	LSN uint64 `json:"lsn"`
	// Epoch is the epoch the store writes its next entries in: the epoch
	// of the newest primary it was or followed.
	Epoch uint64 `json:"epoch"`
	// LastEpoch is the epoch of the log entry at LSN, 0 when there is none
	// (an empty store, or a log trimmed to nothing).
	LastEpoch uint64 `json:"last_epoch"`
}

// Newer reports whether p's log is newer than q's, by the rule a voter
// applies to a candidate (pkg/store/server, lease.go): the epoch of the last
// entry first, then the LSN. A log that ends in a newer epoch is newer even
// when it is shorter: the longer one's extra entries were written by a
// primary that had already been replaced, and were never acknowledged.
func (p Position) Newer(q Position) bool {
	if p.LastEpoch != q.LastEpoch {
		return p.LastEpoch > q.LastEpoch
	}
	return p.LSN > q.LSN
}

// SameLog reports whether p and q end at the same entry, which means they
// hold the same history: one primary writes each epoch.
func (p Position) SameLog(q Position) bool { return p.LastEpoch == q.LastEpoch && p.LSN == q.LSN }

// String is "epoch E, log L", the words `node up` prints.
func (p Position) String() string { return fmt.Sprintf("epoch %d, log %d", p.LastEpoch, p.LSN) }

// Errors of ReadPosition.
var (
	// ErrLocked: another process (a running store node) holds the file.
	ErrLocked = errors.New("store file is in use by another process")
	// ErrNotStore: the file is not a store file, or is damaged.
	ErrNotStore = errors.New("not a readable store file")
)

// ReadPosition reads the LSN and epochs of the store file at path without
// running a node: it opens the file read-only and waits at most timeout
// for a running node's lock (ErrLocked after it). A file that is not a
// bbolt file, is damaged, or lacks the store's own buckets is ErrNotStore;
// a missing file is an error that wraps fs.ErrNotExist.
func ReadPosition(path string, timeout time.Duration) (pos Position, err error) {
	if timeout <= 0 {
		timeout = time.Second
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return pos, fmt.Errorf("read store position %s: %w (still locked after %v)", path, ErrLocked, timeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return pos, fmt.Errorf("read store position %s: %w: %v", path, ErrNotStore, err)
	case err != nil:
		return pos, fmt.Errorf("read store position %s: %w", path, err)
	}
	defer bdb.Close()
	// bbolt panics on some damaged pages rather than returning an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read store position %s: %w: %v", path, ErrNotStore, r)
		}
	}()
	err = bdb.View(func(tx *bolt.Tx) error {
		meta, logb := tx.Bucket(metaBucket), tx.Bucket(logBucket)
		if meta == nil || logb == nil {
			return fmt.Errorf("%w: no %s or %s bucket", ErrNotStore, metaBucket, logBucket)
		}
		pos.LSN, pos.Epoch = getU64(meta.Get(metaLSN)), getU64(meta.Get(metaEpoch))
		if pos.LSN == 0 {
			return nil
		}
		v := logb.Get(u64(pos.LSN))
		if v == nil {
			return nil
		}
		e, err := DecodeEntry(v)
		if err != nil {
			return fmt.Errorf("%w: log entry %d: %v", ErrNotStore, pos.LSN, err)
		}
		pos.LastEpoch = e.Epoch
		return nil
	})
	if err != nil {
		return Position{}, fmt.Errorf("read store position %s: %w", path, err)
	}
	return pos, nil
}
