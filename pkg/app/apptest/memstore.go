// Package apptest holds test doubles for the blog: an in-memory store.Store
// with the same semantics as the real database (ordered scans, atomic
// transactions with conditions, LSNs, traces), and a switch that makes it
// unavailable, so tests can check the app's 503 path without killing a node.
package apptest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/scalestack/scalestack/pkg/store"
)

// MemStore is an in-memory store.Store. It is safe for concurrent use.
type MemStore struct {
	// Name is reported as the answering node in traces.
	Name string

	down atomic.Bool

	mu      sync.RWMutex
	lsn     uint64
	buckets map[string]map[string][]byte
}

// NewMemStore returns an empty store named "memory".
func NewMemStore() *MemStore {
	return &MemStore{Name: "memory", buckets: map[string]map[string][]byte{}}
}

// SetDown makes every call fail with store.ErrUnavailable while down is true.
func (m *MemStore) SetDown(down bool) { m.down.Store(down) }

// LSN returns the LSN of the last committed transaction.
func (m *MemStore) LSN() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.lsn
}

func (m *MemStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.down.Load() {
		return fmt.Errorf("memstore: %w", store.ErrUnavailable)
	}
	return nil
}

func (m *MemStore) trace(ctx context.Context, lsn uint64) {
	if tr := store.TraceFrom(ctx); tr != nil {
		tr.Record(m.Name, lsn)
	}
}

// Get implements store.Store.
func (m *MemStore) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.trace(ctx, m.lsn)
	v, ok := m.buckets[bucket][key]
	if !ok {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, store.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// Scan implements store.Store: the range is [Start, End) in either direction.
func (m *MemStore) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.trace(ctx, m.lsn)
	b, ok := m.buckets[bucket]
	if !ok {
		return nil, fmt.Errorf("scan %s: %w", bucket, store.ErrNotFound)
	}
	keys := make([]string, 0, len(b))
	for k := range b {
		if opts.Prefix != "" && !strings.HasPrefix(k, opts.Prefix) {
			continue
		}
		if opts.Start != "" && k < opts.Start {
			continue
		}
		if opts.End != "" && k >= opts.End {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if opts.Reverse {
		for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
			keys[i], keys[j] = keys[j], keys[i]
		}
	}
	limit := opts.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	if len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]store.Pair, len(keys))
	for i, k := range keys {
		out[i] = store.Pair{Key: k, Value: bytes.Clone(b[k])}
	}
	return out, nil
}

// Txn implements store.Store.
func (m *MemStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	if err := m.check(ctx); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range ops {
		if op.Bucket == "" || op.Key == "" {
			return 0, fmt.Errorf("txn: empty bucket or key: %w", store.ErrInvalid)
		}
		switch op.Kind {
		case store.OpPut, store.OpDelete:
		case store.OpCheck:
			v, ok := m.buckets[op.Bucket][op.Key]
			if op.Absent && ok || !op.Absent && (!ok || !bytes.Equal(v, op.Value)) {
				return 0, fmt.Errorf("txn: check %s/%s: %w", op.Bucket, op.Key, store.ErrConditionFailed)
			}
		default:
			return 0, fmt.Errorf("txn: op %q: %w", op.Kind, store.ErrInvalid)
		}
	}
	for _, op := range ops {
		switch op.Kind {
		case store.OpPut:
			b, ok := m.buckets[op.Bucket]
			if !ok {
				b = map[string][]byte{}
				m.buckets[op.Bucket] = b
			}
			b[op.Key] = bytes.Clone(op.Value)
		case store.OpDelete:
			delete(m.buckets[op.Bucket], op.Key)
		}
	}
	m.lsn++
	m.trace(ctx, m.lsn)
	return m.lsn, nil
}
