package boltdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/scalestack/scalestack/pkg/store"
)

// Names of the store's own buckets and meta keys. They start with
// reservedPrefix, so no user bucket can collide with them.
var (
	logBucket  = []byte("_log")  // big-endian LSN -> EncodeEntry
	metaBucket = []byte("_meta") // metaLSN, metaEpoch
	metaLSN    = []byte("lsn")   // 8 bytes big-endian: LSN of the last commit
	metaEpoch  = []byte("epoch") // 8 bytes big-endian: epoch of this primary
)

// Options tunes a DB. The zero value of every field means its default
// (DefaultOptions), so Options{} is a working configuration.
type Options struct {
	// LogRetention is how many of the most recent log entries are kept; older
	// ones are deleted in the same bbolt transaction that adds new ones.
	// Default 10000. More lets a replica that was away longer catch up from
	// the log instead of a snapshot, at the cost of disk (an entry holds the
	// full values it wrote).
	LogRetention int

	// MaxBatchTxns is the most transactions grouped into one bbolt commit.
	// Default 256. Larger batches amortise the fsync over more writers but
	// make each commit, and so the wait of its first writer, longer.
	MaxBatchTxns int

	// MaxBatchBytes stops a batch from growing once its transactions hold
	// this many bytes of buckets, keys and values. Default 16 MiB.
	MaxBatchBytes int

	// BatchDelay is how long the committer waits for more transactions after
	// the first one of a batch arrives. Default 0: no waiting; writers that
	// queue up while a commit is syncing form the next batch by themselves,
	// which groups well under load and adds no latency when idle.
	BatchDelay time.Duration

	// MaxValueBytes is the largest value accepted, in bytes. Default and
	// ceiling: MaxValueSize.
	MaxValueBytes int

	// LockTimeout is how long Open waits for another process's lock on the
	// file. Default 5s.
	LockTimeout time.Duration

	// Logger receives the DB's structured logs. Nil discards them.
	Logger *slog.Logger

	// OnCommit, when set, is called by the committer after every bbolt commit
	// with the number of transactions it held and how long it took, fsync
	// included. It must be quick; the Server uses it for its metrics.
	OnCommit func(txns int, d time.Duration)
}

// DefaultOptions returns the defaults described on Options.
func DefaultOptions() Options {
	return Options{
		LogRetention:  10000,
		MaxBatchTxns:  256,
		MaxBatchBytes: 16 << 20,
		MaxValueBytes: store.MaxValueSize,
		LockTimeout:   5 * time.Second,
	}
}

// withDefaults fills the zero fields of o from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.LogRetention == 0 {
		o.LogRetention = d.LogRetention
	}
	if o.MaxBatchTxns == 0 {
		o.MaxBatchTxns = d.MaxBatchTxns
	}
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = d.MaxBatchBytes
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = d.MaxValueBytes
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = d.LockTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports the first field of o that is out of range.
func (o Options) Validate() error {
	switch {
	case o.LogRetention < 0:
		return fmt.Errorf("LogRetention %d: must not be negative", o.LogRetention)
	case o.MaxBatchTxns < 0:
		return fmt.Errorf("MaxBatchTxns %d: must not be negative", o.MaxBatchTxns)
	case o.MaxBatchBytes < 0:
		return fmt.Errorf("MaxBatchBytes %d: must not be negative", o.MaxBatchBytes)
	case o.BatchDelay < 0:
		return fmt.Errorf("BatchDelay %v: must not be negative", o.BatchDelay)
	case o.MaxValueBytes < 0 || o.MaxValueBytes > store.MaxValueSize:
		return fmt.Errorf("MaxValueBytes %d: must be between 0 and MaxValueSize %d", o.MaxValueBytes, store.MaxValueSize)
	case o.LockTimeout < 0:
		return fmt.Errorf("LockTimeout %v: must not be negative", o.LockTimeout)
	}
	return nil
}

// DB is the local store: one bbolt file holding the user buckets, the log
// and the meta data. Transactions are queued to a single committer goroutine
// that groups them into one bbolt commit (group commit); each still gets its
// own LSN, and a failed condition fails only its own transaction. bbolt
// fsyncs every commit, so a transaction whose Txn returned nil survives a
// crash of the process or the machine.
//
// A DB is safe for concurrent use.
type DB struct {
	path string
	opts Options
	log  *slog.Logger
	bolt *bolt.DB

	reqs    chan *request // unbuffered: a send succeeds only into the committer's hands
	closing chan struct{} // closed by Close to stop the committer
	wg      sync.WaitGroup
	once    sync.Once

	lsn   atomic.Uint64 // LSN of the last commit
	epoch atomic.Uint64

	// swap is held for reading by every use of bolt and for writing by
	// Restore, which replaces the file under a running DB (replication).
	swap sync.RWMutex
	// gate, when set, is asked before every commit of local transactions:
	// a non-nil answer fails the whole batch unapplied. Replication sets it
	// so that only a primary holding its lease writes (see SetWriteGate).
	gate atomic.Pointer[func() error]
	// changed is closed and replaced after every commit that moves the LSN,
	// so log shippers can wait for new entries (see Changed).
	changedMu sync.Mutex
	changed   chan struct{}

	txns        atomic.Uint64 // transactions committed (with an LSN)
	commits     atomic.Uint64 // bbolt commits done by the committer
	grouped     atomic.Uint64 // commits that held more than one transaction
	failedConds atomic.Uint64 // transactions refused by a condition
}

// slowCommit is the commit time above which the committer logs a warning:
// far beyond a healthy fsync, it means the disk is struggling.
const slowCommit = time.Second

// request is one transaction waiting for the committer.
type request struct {
	ops  []store.Op
	size int
	done chan struct{} // closed by the committer once lsn and err are set
	lsn  uint64
	err  error
}

// Open opens (creating if needed) the database file at path and starts its
// committer. Close it when done.
func Open(path string, opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open store: options: %w", err)
	}
	opts = opts.withDefaults()
	// NoSync stays false: bbolt fsyncs every commit, which is what makes an
	// acknowledged transaction survive kill -9.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	db := &DB{
		path:    path,
		opts:    opts,
		log:     opts.Logger,
		bolt:    bdb,
		reqs:    make(chan *request),
		closing: make(chan struct{}),
		changed: make(chan struct{}),
	}
	if err := db.recover(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	db.wg.Add(1)
	go db.run()
	db.log.Info("store opened", "path", path, "lsn", db.LSN(), "epoch", db.Epoch())
	return db, nil
}

// recover creates the internal buckets of a new file, and on an existing one
// checks that the meta data and the log agree.
func (db *DB) recover() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return fmt.Errorf("create meta: %w", err)
		}
		logb, err := tx.CreateBucketIfNotExists(logBucket)
		if err != nil {
			return fmt.Errorf("create log: %w", err)
		}
		if meta.Get(metaEpoch) == nil {
			// A new store starts at epoch 1; failover (issue 6) raises it.
			if err := meta.Put(metaEpoch, u64(1)); err != nil {
				return fmt.Errorf("init epoch: %w", err)
			}
		}
		lsn := getU64(meta.Get(metaLSN))
		if last, _ := logb.Cursor().Last(); last != nil {
			if got := binary.BigEndian.Uint64(last); got != lsn {
				return fmt.Errorf("recover log: last entry has LSN %d, meta says %d", got, lsn)
			}
		}
		db.lsn.Store(lsn)
		db.epoch.Store(getU64(meta.Get(metaEpoch)))
		return nil
	})
}

// Path returns the file the DB lives in.
func (db *DB) Path() string { return db.path }

// LSN returns the LSN of the last committed transaction (0 for a new store).
func (db *DB) LSN() uint64 { return db.lsn.Load() }

// Epoch returns the epoch this store writes into its log entries.
func (db *DB) Epoch() uint64 { return db.epoch.Load() }

// Close stops the committer, failing transactions still queued with
// ErrClosed, and closes the file. It waits for running reads to finish.
func (db *DB) Close() error {
	var err error
	db.once.Do(func() {
		close(db.closing)
		db.wg.Wait()
		if e := db.bolt.Close(); e != nil {
			err = fmt.Errorf("close store: %w", e)
		}
		db.log.Info("store closed", "lsn", db.LSN())
	})
	return err
}

// Get returns a copy of the value of bucket/key, or ErrNotFound.
func (db *DB) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	v, _, err := db.GetLSN(ctx, bucket, key)
	return v, err
}

// GetLSN is Get that also returns the LSN of the state it read, also on
// ErrNotFound.
func (db *DB) GetLSN(ctx context.Context, bucket, key string) ([]byte, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, db.LSN(), err
	}
	if err := store.CheckBucket(bucket); err != nil {
		return nil, db.LSN(), err
	}
	if err := store.CheckKey(key); err != nil {
		return nil, db.LSN(), err
	}
	var val []byte
	var lsn uint64
	err := db.view(func(tx *bolt.Tx) error {
		lsn = getU64(tx.Bucket(metaBucket).Get(metaLSN))
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("bucket %q: %w", bucket, store.ErrNotFound)
		}
		v := b.Get([]byte(key))
		if v == nil {
			return fmt.Errorf("key %q in bucket %q: %w", key, bucket, store.ErrNotFound)
		}
		val = append([]byte{}, v...)
		return nil
	})
	return val, lsn, err
}

// Scan returns the pairs of bucket selected by opts, in key order.
func (db *DB) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	pairs, _, err := db.ScanLSN(ctx, bucket, opts)
	return pairs, err
}

// ScanLSN is Scan that also returns the LSN of the state it read.
func (db *DB) ScanLSN(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, db.LSN(), err
	}
	if err := store.CheckBucket(bucket); err != nil {
		return nil, db.LSN(), err
	}
	limit := opts.Limit
	switch {
	case limit < 0:
		return nil, db.LSN(), fmt.Errorf("scan limit %d: %w", limit, store.ErrInvalid)
	case limit > store.MaxScanLimit:
		return nil, db.LSN(), fmt.Errorf("scan limit %d over MaxScanLimit %d: %w", limit, store.MaxScanLimit, store.ErrInvalid)
	case limit == 0:
		limit = store.MaxScanLimit
	}
	var pairs []store.Pair
	var lsn uint64
	err := db.view(func(tx *bolt.Tx) error {
		lsn = getU64(tx.Bucket(metaBucket).Get(metaLSN))
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("bucket %q: %w", bucket, store.ErrNotFound)
		}
		pairs = scan(b.Cursor(), opts, limit)
		return nil
	})
	return pairs, lsn, err
}

// scan walks c over the range of opts. The range is the intersection of
// [Start, End) and the keys with Prefix: lo is its first key, hi the first
// key past it (nil: unbounded).
func scan(c *bolt.Cursor, opts store.ScanOptions, limit int) []store.Pair {
	prefix := []byte(opts.Prefix)
	lo := []byte(opts.Start)
	if bytes.Compare(prefix, lo) > 0 {
		lo = prefix
	}
	var hi []byte
	if opts.End != "" {
		hi = []byte(opts.End)
	}
	if ph := prefixEnd(prefix); ph != nil && (hi == nil || bytes.Compare(ph, hi) < 0) {
		hi = ph
	}
	in := func(k []byte) bool {
		return k != nil && bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0) && bytes.HasPrefix(k, prefix)
	}
	var pairs []store.Pair
	add := func(k, v []byte) {
		pairs = append(pairs, store.Pair{Key: string(k), Value: append([]byte{}, v...)})
	}
	if !opts.Reverse {
		for k, v := c.Seek(lo); in(k) && len(pairs) < limit; k, v = c.Next() {
			add(k, v)
		}
		return pairs
	}
	var k, v []byte
	if hi == nil {
		k, v = c.Last()
	} else if k, v = c.Seek(hi); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev() // Seek landed on the first key >= hi, which is out
	}
	for ; in(k) && len(pairs) < limit; k, v = c.Prev() {
		add(k, v)
	}
	return pairs
}

// prefixEnd returns the first key after every key that starts with p, or nil
// if there is none (p empty or all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// view runs fn in a read transaction, mapping a closed database to ErrClosed.
func (db *DB) view(fn func(*bolt.Tx) error) error {
	db.swap.RLock()
	defer db.swap.RUnlock()
	err := db.bolt.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// Txn applies ops atomically and returns the LSN of the commit. Conditions
// (OpCheck) are evaluated against the state before the transaction's own
// writes; if one fails nothing is applied and the error wraps
// ErrConditionFailed. A transaction of conditions only writes nothing and
// returns the LSN of the state it was checked against. If ctx ends while the
// transaction is queued it is not applied; if it ends after the committer has
// taken it, Txn returns ctx's error and the outcome is unknown.
func (db *DB) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	size, err := store.CheckOps(ops, db.opts.MaxValueBytes)
	if err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	r := &request{ops: ops, size: size, done: make(chan struct{})}
	select {
	case db.reqs <- r:
	case <-db.closing:
		return 0, fmt.Errorf("txn: %w", store.ErrClosed)
	case <-ctx.Done():
		return 0, fmt.Errorf("txn: %w", ctx.Err())
	}
	select {
	case <-r.done:
		return r.lsn, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("txn: outcome unknown: %w", ctx.Err())
	}
}

// run is the committer: it owns every write to the file.
func (db *DB) run() {
	defer db.wg.Done()
	batch := make([]*request, 0, db.opts.MaxBatchTxns)
	for {
		var first *request
		select {
		case first = <-db.reqs:
		case <-db.closing:
			return
		}
		batch = append(batch[:0], first)
		db.fill(&batch, first.size)
		db.commit(batch)
		for _, r := range batch {
			close(r.done)
		}
		clear(batch) // drop references to the finished requests
	}
}

// fill adds queued transactions to batch until it is full, nothing more is
// waiting (after BatchDelay, if set) or the DB is closing.
func (db *DB) fill(batch *[]*request, size int) {
	var timeout <-chan time.Time
	if db.opts.BatchDelay > 0 {
		t := time.NewTimer(db.opts.BatchDelay)
		defer t.Stop()
		timeout = t.C
	}
	for len(*batch) < db.opts.MaxBatchTxns && size < db.opts.MaxBatchBytes {
		if timeout == nil {
			select {
			case r := <-db.reqs:
				*batch = append(*batch, r)
				size += r.size
			default:
				return
			}
			continue
		}
		select {
		case r := <-db.reqs:
			*batch = append(*batch, r)
			size += r.size
		case <-timeout:
			return
		case <-db.closing:
			return
		}
	}
}

// commit applies batch in one bbolt transaction, setting each request's lsn
// and err. If the commit itself fails, the transactions are retried one by
// one so that a single bad one cannot fail its neighbours.
func (db *DB) commit(batch []*request) {
	if g := db.gate.Load(); g != nil {
		if err := (*g)(); err != nil {
			for _, r := range batch {
				r.lsn, r.err = 0, fmt.Errorf("txn: %w", err)
			}
			return
		}
	}
	start := time.Now()
	var last uint64
	db.swap.RLock()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		last, err = db.apply(tx, batch)
		return err
	})
	db.swap.RUnlock()
	d := time.Since(start)
	if d > slowCommit {
		db.log.Warn("slow commit", "txns", len(batch), "duration", d)
	}
	if err != nil {
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			err = store.ErrClosed
		}
		if len(batch) > 1 {
			db.log.Warn("group commit failed, retrying one by one", "txns", len(batch), "err", err)
			for _, r := range batch {
				db.commit([]*request{r})
			}
			return
		}
		batch[0].lsn, batch[0].err = 0, fmt.Errorf("txn: commit: %w", err)
		return
	}
	// LSNs are dense, so the number of transactions that got one is the
	// distance travelled.
	db.txns.Add(last - db.lsn.Load())
	db.lsn.Store(last)
	db.notify()
	for _, r := range batch {
		if r.err != nil {
			db.failedConds.Add(1) // after a successful commit, the only error is a failed check
		}
	}
	db.commits.Add(1)
	if len(batch) > 1 {
		db.grouped.Add(1)
	}
	if db.opts.OnCommit != nil {
		db.opts.OnCommit(len(batch), d)
	}
}

// apply writes the transactions of batch into tx, in queue order, each
// seeing the writes of those before it. It returns the last LSN.
func (db *DB) apply(tx *bolt.Tx, batch []*request) (uint64, error) {
	meta := tx.Bucket(metaBucket)
	logb := tx.Bucket(logBucket)
	// The log is append-only at the high end and trimmed at the low end:
	// full pages waste no space and split less.
	logb.FillPercent = 1.0
	epoch := getU64(meta.Get(metaEpoch))
	lsn := getU64(meta.Get(metaLSN))
	start := lsn
	for _, r := range batch {
		r.lsn, r.err = 0, nil
		if err := checkConds(tx, r.ops); err != nil {
			r.err = fmt.Errorf("txn: %w", err)
			continue
		}
		e := Entry{Epoch: epoch, Ops: make([]store.Op, 0, len(r.ops))}
		for _, op := range r.ops {
			if op.Kind != store.OpCheck {
				e.Ops = append(e.Ops, op)
			}
		}
		if len(e.Ops) == 0 {
			r.lsn = lsn
			continue
		}
		lsn++
		e.LSN = lsn
		if err := applyOps(tx, e.Ops); err != nil {
			return 0, err
		}
		if err := logb.Put(u64(lsn), EncodeEntry(e)); err != nil {
			return 0, fmt.Errorf("append log entry %d: %w", lsn, err)
		}
		r.lsn = lsn
	}
	if lsn == start {
		return lsn, nil
	}
	if err := meta.Put(metaLSN, u64(lsn)); err != nil {
		return 0, fmt.Errorf("write meta lsn: %w", err)
	}
	return lsn, trimLog(logb, lsn, db.opts.LogRetention)
}

// checkConds evaluates the OpCheck operations of ops against tx.
func checkConds(tx *bolt.Tx, ops []store.Op) error {
	for i, op := range ops {
		if op.Kind != store.OpCheck {
			continue
		}
		var cur []byte
		if b := tx.Bucket([]byte(op.Bucket)); b != nil {
			cur = b.Get([]byte(op.Key))
		}
		switch {
		case op.Absent && cur != nil:
			return fmt.Errorf("op %d: %s/%s exists: %w", i, op.Bucket, op.Key, store.ErrConditionFailed)
		case !op.Absent && cur == nil:
			return fmt.Errorf("op %d: %s/%s does not exist: %w", i, op.Bucket, op.Key, store.ErrConditionFailed)
		case !op.Absent && !bytes.Equal(cur, op.Value):
			return fmt.Errorf("op %d: %s/%s holds another value: %w", i, op.Bucket, op.Key, store.ErrConditionFailed)
		}
	}
	return nil
}

// applyOps performs puts and deletes. A put creates its bucket; a delete in a
// missing bucket does nothing.
func applyOps(tx *bolt.Tx, ops []store.Op) error {
	for i, op := range ops {
		switch op.Kind {
		case store.OpPut:
			b, err := tx.CreateBucketIfNotExists([]byte(op.Bucket))
			if err != nil {
				return fmt.Errorf("op %d: create bucket %q: %w", i, op.Bucket, err)
			}
			if err := b.Put([]byte(op.Key), op.Value); err != nil {
				return fmt.Errorf("op %d: put %s/%s: %w", i, op.Bucket, op.Key, err)
			}
		case store.OpDelete:
			if b := tx.Bucket([]byte(op.Bucket)); b != nil {
				if err := b.Delete([]byte(op.Key)); err != nil {
					return fmt.Errorf("op %d: delete %s/%s: %w", i, op.Bucket, op.Key, err)
				}
			}
		}
	}
	return nil
}

// trimLog deletes the entries that fall out of the retention window ending
// at lsn. It runs in every writing commit, so it usually deletes about as
// many entries as the commit added.
func trimLog(logb *bolt.Bucket, lsn uint64, retention int) error {
	if retention <= 0 || lsn <= uint64(retention) {
		return nil
	}
	cut := lsn - uint64(retention) // delete every entry <= cut
	var old [][]byte
	c := logb.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= cut; k, _ = c.Next() {
		old = append(old, k)
	}
	for _, k := range old {
		if err := logb.Delete(k); err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
	}
	return nil
}

// ReadLog returns up to max log entries with LSN >= from, in order. It
// returns ErrCompacted if entries from `from` on are no longer all in the
// log (the reader must bootstrap from a snapshot), and no entries and no
// error if from is past the last LSN. This is the seam replication (issue 6)
// streams from.
func (db *DB) ReadLog(ctx context.Context, from uint64, max int) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("read log: max %d: %w", max, store.ErrInvalid)
	}
	if from == 0 {
		from = 1
	}
	var entries []Entry
	err := db.view(func(tx *bolt.Tx) error {
		last := getU64(tx.Bucket(metaBucket).Get(metaLSN))
		if from > last {
			return nil
		}
		c := tx.Bucket(logBucket).Cursor()
		k, v := c.Seek(u64(from))
		if k == nil || binary.BigEndian.Uint64(k) != from {
			return fmt.Errorf("read log from %d: %w", from, store.ErrCompacted)
		}
		for ; k != nil && len(entries) < max; k, v = c.Next() {
			e, err := DecodeEntry(v)
			if err != nil {
				return fmt.Errorf("read log entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			entries = append(entries, e)
		}
		return nil
	})
	return entries, err
}

// Stats are live figures of a DB.
type Stats struct {
	LSN   uint64 `json:"lsn"`
	Epoch uint64 `json:"epoch"`
	// Txns is the number of transactions committed with an LSN since Open.
	Txns uint64 `json:"txns"`
	// Commits is the number of bbolt commits (fsyncs) since Open; Txns /
	// Commits is the average group size.
	Commits uint64 `json:"commits"`
	// GroupedCommits counts commits that held more than one transaction.
	GroupedCommits uint64 `json:"grouped_commits"`
	// ConditionFailures counts transactions refused by a condition.
	ConditionFailures uint64 `json:"condition_failures"`
	// Buckets and Keys count the user buckets and their keys.
	Buckets int `json:"buckets"`
	Keys    int `json:"keys"`
	// LogEntries is how many log entries are retained; LogFirstLSN the oldest.
	LogEntries  int    `json:"log_entries"`
	LogFirstLSN uint64 `json:"log_first_lsn"`
	// Bytes is the size of the file.
	Bytes int64 `json:"bytes"`
}

// Stats returns live figures. It walks every bucket to count keys, so it
// costs time in proportion to the number of pages: fine for a status page,
// not for a hot path.
func (db *DB) Stats() (Stats, error) {
	s := Stats{
		Epoch:             db.Epoch(),
		Txns:              db.txns.Load(),
		Commits:           db.commits.Load(),
		GroupedCommits:    db.grouped.Load(),
		ConditionFailures: db.failedConds.Load(),
	}
	err := db.view(func(tx *bolt.Tx) error {
		s.LSN = getU64(tx.Bucket(metaBucket).Get(metaLSN))
		s.Bytes = tx.Size()
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if bytes.Equal(name, logBucket) {
				s.LogEntries = b.Stats().KeyN
				if k, _ := b.Cursor().First(); k != nil {
					s.LogFirstLSN = binary.BigEndian.Uint64(k)
				}
				return nil
			}
			if bytes.HasPrefix(name, []byte(store.ReservedPrefix)) {
				return nil
			}
			s.Buckets++
			s.Keys += b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return s, fmt.Errorf("stats: %w", err)
	}
	return s, nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// The DB is a Store, served as it is by the store role.
var _ store.Store = (*DB)(nil)
