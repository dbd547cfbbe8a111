package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of the store. They are hard ceilings, checked by the DB and by the
// HTTP server before anything is applied; a request over one fails with
// ErrTooLarge (HTTP 413) and changes nothing. Config.MaxValueBytes can lower
// the value limit, never raise it.
const (
	// MaxBucketSize is the longest bucket name, in bytes.
	MaxBucketSize = 255
	// MaxKeySize is the longest key, in bytes. bbolt allows 32 KiB; keys are
	// kept short because every key is also a URL path segment.
	MaxKeySize = 1024
	// MaxValueSize is the largest value, in bytes (1 MiB).
	MaxValueSize = 1 << 20
	// MaxTxnOps is the largest number of operations in one transaction.
	MaxTxnOps = 128
	// MaxTxnBytes caps the sum of the bucket, key and value lengths of the
	// operations of one transaction (4 MiB).
	MaxTxnBytes = 4 << 20
	// MaxRequestBytes caps the body of a POST /v1/txn (8 MiB): room for
	// MaxTxnBytes of data encoded as base64 plus the JSON around it.
	MaxRequestBytes = 8 << 20
	// MaxScanLimit is the most pairs one scan returns; a ScanOptions.Limit of
	// zero means this many, a larger one is ErrInvalid.
	MaxScanLimit = 1000
)

// ReservedPrefix starts the names of the store's own buckets (the log and
// the meta data); user buckets cannot use it.
const ReservedPrefix = "_"

// CheckBucket reports whether name can be a user bucket.
func CheckBucket(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty bucket name: %w", ErrInvalid)
	case len(name) > MaxBucketSize:
		return fmt.Errorf("bucket name of %d bytes over MaxBucketSize %d: %w", len(name), MaxBucketSize, ErrTooLarge)
	case strings.HasPrefix(name, ReservedPrefix):
		return fmt.Errorf("bucket %q: names starting with %q are reserved: %w", name, ReservedPrefix, ErrInvalid)
	case !utf8.ValidString(name):
		return fmt.Errorf("bucket name is not valid UTF-8: %w", ErrInvalid)
	}
	return nil
}

// CheckKey reports whether key can be stored.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("empty key: %w", ErrInvalid)
	case len(key) > MaxKeySize:
		return fmt.Errorf("key of %d bytes over MaxKeySize %d: %w", len(key), MaxKeySize, ErrTooLarge)
	case !utf8.ValidString(key):
		return fmt.Errorf("key is not valid UTF-8: %w", ErrInvalid)
	}
	return nil
}

// CheckOps validates a transaction against the limits, maxValue being the
// value limit in force (at most MaxValueSize). It returns the transaction's
// size in bytes.
func CheckOps(ops []Op, maxValue int) (int, error) {
	if len(ops) == 0 {
		return 0, fmt.Errorf("empty transaction: %w", ErrInvalid)
	}
	if len(ops) > MaxTxnOps {
		return 0, fmt.Errorf("%d ops over MaxTxnOps %d: %w", len(ops), MaxTxnOps, ErrTooLarge)
	}
	size := 0
	for i, op := range ops {
		switch op.Kind {
		case OpPut, OpDelete, OpCheck:
		default:
			return 0, fmt.Errorf("op %d: unknown kind %q: %w", i, op.Kind, ErrInvalid)
		}
		if err := CheckBucket(op.Bucket); err != nil {
			return 0, fmt.Errorf("op %d: %w", i, err)
		}
		if err := CheckKey(op.Key); err != nil {
			return 0, fmt.Errorf("op %d: %w", i, err)
		}
		if len(op.Value) > maxValue {
			return 0, fmt.Errorf("op %d: value of %d bytes over limit %d: %w", i, len(op.Value), maxValue, ErrTooLarge)
		}
		size += len(op.Bucket) + len(op.Key) + len(op.Value)
	}
	if size > MaxTxnBytes {
		return 0, fmt.Errorf("transaction of %d bytes over MaxTxnBytes %d: %w", size, MaxTxnBytes, ErrTooLarge)
	}
	return size, nil
}
