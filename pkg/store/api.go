package store

import (
	"context"
	"errors"
	"sync"
)

// This file holds the store's public vocabulary: the operations of a
// transaction, the options of a scan, the sentinel errors and the Store
// interface that both the local database (*DB) and the network client
// (*Client) satisfy. The app is written against Store only.

// OpKind says what one operation of a transaction does.
type OpKind string

const (
	// OpPut writes Value under Key, creating the bucket if needed.
	OpPut OpKind = "put"
	// OpDelete removes Key; deleting a missing key is not an error.
	OpDelete OpKind = "delete"
	// OpCheck is a compare-and-set condition: the transaction applies only if
	// Key currently holds exactly Value, or, with Absent set, does not exist.
	OpCheck OpKind = "check"
)

// Op is one operation of an atomic transaction.
type Op struct {
	Kind   OpKind
	Bucket string
	Key    string
	Value  []byte
	// Absent, on an OpCheck, requires the key not to exist.
	Absent bool
}

// Put returns an operation that writes value under bucket/key.
func Put(bucket, key string, value []byte) Op {
	return Op{Kind: OpPut, Bucket: bucket, Key: key, Value: value}
}

// Delete returns an operation that removes bucket/key.
func Delete(bucket, key string) Op { return Op{Kind: OpDelete, Bucket: bucket, Key: key} }

// IfEqual returns a condition that bucket/key holds exactly value.
func IfEqual(bucket, key string, value []byte) Op {
	return Op{Kind: OpCheck, Bucket: bucket, Key: key, Value: value}
}

// IfAbsent returns a condition that bucket/key does not exist.
func IfAbsent(bucket, key string) Op {
	return Op{Kind: OpCheck, Bucket: bucket, Key: key, Absent: true}
}

// Pair is one key and its value, as returned by Scan.
type Pair struct {
	Key   string
	Value []byte
}

// ScanOptions selects an ordered range of keys in one bucket.
type ScanOptions struct {
	// Prefix, when set, keeps only keys that start with it.
	Prefix string
	// Start is the first key included (inclusive); empty means the first key.
	Start string
	// End is the first key excluded; empty means no upper bound.
	End string
	// Limit caps the number of pairs returned; zero means the server's
	// maximum (MaxScanLimit), and more than MaxScanLimit is ErrInvalid.
	Limit int
	// Reverse walks from the highest key down.
	Reverse bool
}

// Store is what a user of the store needs: point reads, ordered scans and
// atomic transactions. *DB implements it in-process, *Client over the network.
type Store interface {
	// Get returns the value of bucket/key, or ErrNotFound.
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	// Scan returns the pairs of a bucket in key order (ErrNotFound if the
	// bucket does not exist).
	Scan(ctx context.Context, bucket string, opts ScanOptions) ([]Pair, error)
	// Txn applies ops atomically and returns the LSN of the commit. If a
	// condition fails nothing is applied and the error is ErrConditionFailed.
	Txn(ctx context.Context, ops ...Op) (lsn uint64, err error)
}

// Sentinel errors, tested with errors.Is.
var (
	// ErrNotFound: the bucket or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConditionFailed: a check of a transaction did not hold; nothing was applied.
	ErrConditionFailed = errors.New("condition failed")
	// ErrTooLarge: a key, value or transaction is over the documented limits.
	ErrTooLarge = errors.New("too large")
	// ErrInvalid: a malformed request (empty bucket, unknown op kind, bad JSON).
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable: no store node can take the request right now.
	ErrUnavailable = errors.New("store unavailable")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrCompacted: the log entries asked for have been trimmed from the log;
	// a reader that needs them must start from a snapshot instead.
	ErrCompacted = errors.New("log compacted")
	// ErrNotPrimary: the node asked to write is not the primary (it is a
	// replica, or a primary whose lease has lapsed); the error names the
	// primary to write to when the node knows it.
	ErrNotPrimary = errors.New("not the primary")
	// ErrStaleEpoch: a frame, entry or request carries an epoch older than one
	// already seen; it comes from a deposed primary and is refused (fencing).
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrSyncTimeout: a write was committed on the primary but not made
	// durable by enough replicas (--store-sync) in time, so it was not
	// acknowledged; its outcome is unknown.
	ErrSyncTimeout = errors.New("replicas did not confirm the write in time")
	// ErrBehind: a replica has not applied the LSN a session read needs yet.
	ErrBehind = errors.New("replica behind")
	// ErrUnauthorized: the store port refused the request's credential
	// (none, or not the token of this cluster's key); nothing was applied.
	ErrUnauthorized = errors.New("unauthorized")
)

// Trace records which store node answered a call and at which LSN, so the
// app can put them in its response headers. Attach one with WithTrace.
//
// Several goroutines may make calls with the same Trace: the client records
// through RecordIn, which holds mu. Read the fields directly once the calls
// are done, or through Values and Seen while calls may still be running.
type Trace struct {
	mu sync.Mutex
	// Node is the name of the store node that answered the last call.
	Node string
	// LSN is the highest LSN any call to the default group answered at:
	// the state the caller has seen there (for a write, its commit), which
	// is what a session read must wait for.
	LSN uint64
	// Groups holds the same as LSN for every other store group, by name
	// (stage 10); nil until a call to one answered. LSNs of different
	// groups are never compared.
	Groups LSNs
}

// Record notes an answer from node of the default group at lsn. It is
// safe for concurrent use.
func (t *Trace) Record(node string, lsn uint64) { t.RecordIn(DefaultGroup, node, lsn) }

// RecordIn notes an answer from node of group at lsn. It is safe for
// concurrent use.
func (t *Trace) RecordIn(group, node string, lsn uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Node = node
	if g := canonGroup(group); g != DefaultGroup {
		t.Groups = t.Groups.With(g, lsn)
		return
	}
	if lsn > t.LSN {
		t.LSN = lsn
	}
}

// RecordAll notes an answer from node and the LSNs it saw, one per
// group (another Trace's Seen). It is safe for concurrent use.
func (t *Trace) RecordAll(node string, lsns LSNs) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Node = node
	for g, lsn := range lsns {
		if g == DefaultGroup {
			t.LSN = max(t.LSN, lsn)
		} else {
			t.Groups = t.Groups.With(g, lsn)
		}
	}
}

// Values returns Node and the default group's LSN under the lock.
func (t *Trace) Values() (node string, lsn uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Node, t.LSN
}

// Seen returns Node and the highest LSN seen in each group, the default
// group's included, under the lock.
func (t *Trace) Seen() (node string, lsns LSNs) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.Node, t.Groups.With(DefaultGroup, t.LSN)
}

type traceKey struct{}

// WithTrace returns a context whose store calls record into tr.
func WithTrace(ctx context.Context, tr *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, tr)
}

// TraceFrom returns the Trace attached to ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	tr, _ := ctx.Value(traceKey{}).(*Trace)
	return tr
}
