package boltdb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func TestGetPutDelete(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	ctx := context.Background()

	_, err := db.Get(ctx, "posts", "p1")
	wantErr(t, "Get from a missing bucket", err, store.ErrNotFound)

	lsn := mustTxn(t, db, store.Put("posts", "p1", []byte("hello")), store.Put("posts", "empty", nil))
	if lsn != 1 {
		t.Fatalf("first Txn LSN = %d, want 1", lsn)
	}
	got, err := db.Get(ctx, "posts", "p1")
	if err != nil || string(got) != "hello" {
		t.Fatalf("Get(posts, p1) = %q, %v, want hello", got, err)
	}
	got, err = db.Get(ctx, "posts", "empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Get(posts, empty) = %#v, %v, want an empty non-nil value", got, err)
	}
	_, err = db.Get(ctx, "posts", "p2")
	wantErr(t, "Get a missing key", err, store.ErrNotFound)

	if lsn := mustTxn(t, db, store.Delete("posts", "p1")); lsn != 2 {
		t.Fatalf("delete LSN = %d, want 2", lsn)
	}
	_, err = db.Get(ctx, "posts", "p1")
	wantErr(t, "Get a deleted key", err, store.ErrNotFound)

	// Deleting what does not exist commits and is not an error.
	if lsn := mustTxn(t, db, store.Delete("posts", "p1"), store.Delete("nobucket", "x")); lsn != 3 {
		t.Fatalf("delete of missing keys LSN = %d, want 3", lsn)
	}
	_, err = db.Scan(ctx, "nobucket", store.ScanOptions{})
	wantErr(t, "a delete must not create its bucket: Scan", err, store.ErrNotFound)
	if got := db.LSN(); got != 3 {
		t.Fatalf("LSN() = %d, want 3", got)
	}
}

func TestScan(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	keys := []string{"a", "ab", "abc", "abd", "b", "ba", "bb", "c"}
	var ops []store.Op
	for _, k := range keys {
		ops = append(ops, store.Put("s", k, []byte("v-"+k)))
	}
	mustTxn(t, db, ops...)

	tests := []struct {
		name string
		opts store.ScanOptions
		want string // keys joined by spaces
	}{
		{"all", store.ScanOptions{}, "a ab abc abd b ba bb c"},
		{"all reverse", store.ScanOptions{Reverse: true}, "c bb ba b abd abc ab a"},
		{"prefix", store.ScanOptions{Prefix: "ab"}, "ab abc abd"},
		{"prefix reverse", store.ScanOptions{Prefix: "ab", Reverse: true}, "abd abc ab"},
		{"prefix limit reverse", store.ScanOptions{Prefix: "b", Limit: 2, Reverse: true}, "bb ba"},
		{"prefix and start", store.ScanOptions{Prefix: "b", Start: "ba"}, "ba bb"},
		{"prefix and end", store.ScanOptions{Prefix: "a", End: "abc"}, "a ab"},
		{"prefix and end reverse", store.ScanOptions{Prefix: "a", End: "abc", Reverse: true}, "ab a"},
		{"prefix matching nothing", store.ScanOptions{Prefix: "z"}, ""},
		{"start", store.ScanOptions{Start: "b"}, "b ba bb c"},
		{"start between keys", store.ScanOptions{Start: "abz"}, "b ba bb c"},
		{"start past the end", store.ScanOptions{Start: "d"}, ""},
		{"range", store.ScanOptions{Start: "ab", End: "b"}, "ab abc abd"},
		{"range reverse", store.ScanOptions{Start: "ab", End: "bb", Reverse: true}, "ba b abd abc ab"},
		{"end reverse", store.ScanOptions{End: "b", Reverse: true}, "abd abc ab a"},
		{"end past every key reverse", store.ScanOptions{End: "zzz", Reverse: true}, "c bb ba b abd abc ab a"},
		{"end between keys reverse", store.ScanOptions{End: "abcc", Reverse: true}, "abc ab a"},
		{"empty range", store.ScanOptions{Start: "b", End: "b"}, ""},
		{"inverted range", store.ScanOptions{Start: "c", End: "a"}, ""},
		{"inverted range reverse", store.ScanOptions{Start: "c", End: "a", Reverse: true}, ""},
		{"limit", store.ScanOptions{Limit: 2}, "a ab"},
		{"limit reverse", store.ScanOptions{Limit: 2, Reverse: true}, "c bb"},
		{"limit over the range", store.ScanOptions{Prefix: "ab", Limit: 10}, "ab abc abd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, err := db.Scan(context.Background(), "s", tt.opts)
			if err != nil {
				t.Fatalf("Scan(%+v): %v", tt.opts, err)
			}
			var got []string
			for _, p := range pairs {
				if want := "v-" + p.Key; string(p.Value) != want {
					t.Errorf("Scan(%+v): value of %q = %q, want %q", tt.opts, p.Key, p.Value, want)
				}
				got = append(got, p.Key)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("Scan(%+v) = %q, want %q", tt.opts, g, tt.want)
			}
		})
	}
}

func TestScanPrefixOfHighBytes(t *testing.T) {
	// A prefix ending in the highest UTF-8 bytes still bounds the scan.
	db := mustOpenDB(t, boltdb.Options{})
	mustTxn(t, db, store.Put("s", "a\U0010FFFF", []byte("1")), store.Put("s", "a\U0010FFFFz", []byte("2")), store.Put("s", "b", []byte("3")))
	pairs, err := db.Scan(context.Background(), "s", store.ScanOptions{Prefix: "a\U0010FFFF", Reverse: true})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(pairs) != 2 || pairs[0].Key != "a\U0010FFFFz" {
		t.Fatalf("Scan = %v, want the two keys with the prefix, highest first", pairs)
	}
}

func TestScanLimits(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	ctx := context.Background()
	var ops []store.Op
	for i := range store.MaxTxnOps {
		ops = append(ops, store.Put("s", fmt.Sprintf("k%04d", i), nil))
	}
	for range (store.MaxScanLimit + store.MaxTxnOps) / store.MaxTxnOps {
		mustTxn(t, db, ops...)
		for i := range ops {
			ops[i].Key = fmt.Sprintf("k%04d", i+len(ops)*int(db.LSN()))
		}
	}
	pairs, err := db.Scan(ctx, "s", store.ScanOptions{})
	if err != nil || len(pairs) != store.MaxScanLimit {
		t.Fatalf("Scan with Limit 0 returned %d pairs, %v; want MaxScanLimit %d", len(pairs), err, store.MaxScanLimit)
	}
	_, err = db.Scan(ctx, "s", store.ScanOptions{Limit: store.MaxScanLimit + 1})
	wantErr(t, "Scan over MaxScanLimit", err, store.ErrInvalid)
	_, err = db.Scan(ctx, "s", store.ScanOptions{Limit: -1})
	wantErr(t, "Scan with a negative limit", err, store.ErrInvalid)
}

func TestTxnValidation(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{MaxValueBytes: 100})
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	many := make([]store.Op, store.MaxTxnOps+1)
	for i := range many {
		many[i] = store.Put("b", fmt.Sprint(i), nil)
	}
	tests := []struct {
		name string
		ops  []store.Op
		want error
	}{
		{"no ops", nil, store.ErrInvalid},
		{"empty bucket", []store.Op{store.Put("", "k", nil)}, store.ErrInvalid},
		{"reserved bucket", []store.Op{store.Put("_log", "k", nil)}, store.ErrInvalid},
		{"reserved bucket in a check", []store.Op{store.IfAbsent("_meta", "lsn"), store.Put("b", "k", nil)}, store.ErrInvalid},
		{"empty key", []store.Op{store.Put("b", "", nil)}, store.ErrInvalid},
		{"key not UTF-8", []store.Op{store.Put("b", "\xff", nil)}, store.ErrInvalid},
		{"unknown kind", []store.Op{{Kind: "frob", Bucket: "b", Key: "k"}}, store.ErrInvalid},
		{"bucket name too long", []store.Op{store.Put(strings.Repeat("b", store.MaxBucketSize+1), "k", nil)}, store.ErrTooLarge},
		{"key too long", []store.Op{store.Put("b", strings.Repeat("k", store.MaxKeySize+1), nil)}, store.ErrTooLarge},
		{"value over the configured limit", []store.Op{store.Put("b", "k", big(101))}, store.ErrTooLarge},
		{"too many ops", many, store.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid put first: it must not be applied either.
			ops := append([]store.Op{store.Put("b", "first", []byte("x"))}, tt.ops...)
			if tt.ops == nil {
				ops = nil
			}
			_, err := db.Txn(context.Background(), ops...)
			wantErr(t, "Txn", err, tt.want)
			if _, err := db.Get(context.Background(), "b", "first"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("after a refused Txn, Get(b, first) err = %v, want ErrNotFound", err)
			}
		})
	}
	if got := db.LSN(); got != 0 {
		t.Fatalf("LSN after refused transactions = %d, want 0", got)
	}
}

func TestTxnBytesLimit(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	v := make([]byte, store.MaxValueSize)
	var ops []store.Op
	for i := range store.MaxTxnBytes/store.MaxValueSize + 1 {
		ops = append(ops, store.Put("b", fmt.Sprint(i), v))
	}
	_, err := db.Txn(context.Background(), ops...)
	wantErr(t, "Txn over MaxTxnBytes", err, store.ErrTooLarge)
}

func TestTxnConditions(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	ctx := context.Background()
	mustTxn(t, db, store.Put("acct", "ann", []byte("10")), store.Put("acct", "bob", []byte("5")))

	// A transfer guarded by both balances; the second check is stale.
	_, err := db.Txn(ctx,
		store.IfEqual("acct", "ann", []byte("10")),
		store.IfEqual("acct", "bob", []byte("4")),
		store.Put("acct", "ann", []byte("7")),
		store.Put("acct", "bob", []byte("8")),
		store.Put("audit", "t1", []byte("transfer")),
	)
	wantErr(t, "Txn with a stale check", err, store.ErrConditionFailed)
	for key, want := range map[string]string{"ann": "10", "bob": "5"} {
		if got, _ := db.Get(ctx, "acct", key); string(got) != want {
			t.Errorf("after the failed Txn, Get(acct, %s) = %q, want %q", key, got, want)
		}
	}
	if _, err := db.Scan(ctx, "audit", store.ScanOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the failed Txn, bucket audit exists (err %v); want ErrNotFound", err)
	}
	if got := db.LSN(); got != 1 {
		t.Fatalf("LSN after a failed Txn = %d, want 1", got)
	}

	lsn := mustTxn(t, db,
		store.IfEqual("acct", "ann", []byte("10")),
		store.IfEqual("acct", "bob", []byte("5")),
		store.IfAbsent("audit", "t1"),
		store.Put("acct", "ann", []byte("7")),
		store.Put("acct", "bob", []byte("8")),
		store.Put("audit", "t1", []byte("transfer")),
	)
	if lsn != 2 {
		t.Fatalf("transfer LSN = %d, want 2", lsn)
	}
	_, err = db.Txn(ctx, store.IfAbsent("audit", "t1"), store.Put("audit", "t1", []byte("again")))
	wantErr(t, "IfAbsent on an existing key", err, store.ErrConditionFailed)

	// Checks see the state before the transaction's own writes.
	_, err = db.Txn(ctx, store.Put("acct", "cy", []byte("1")), store.IfEqual("acct", "cy", []byte("1")))
	wantErr(t, "a check of a key written by the same Txn", err, store.ErrConditionFailed)

	// A transaction of checks only commits nothing and answers the current LSN.
	if lsn := mustTxn(t, db, store.IfEqual("acct", "ann", []byte("7"))); lsn != 2 {
		t.Fatalf("checks-only Txn LSN = %d, want 2", lsn)
	}
	if got := db.LSN(); got != 2 {
		t.Fatalf("LSN after a checks-only Txn = %d, want 2", got)
	}
}

// TestGroupCommit runs many concurrent writers: every transaction commits
// with a unique LSN, the LSNs are dense, every write is there, and the
// transactions were grouped into fewer commits.
func TestGroupCommit(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{BatchDelay: 2 * time.Millisecond})
	const writers, each = 32, 20
	lsns := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%02d-%03d", w, i)
				lsn, err := db.Txn(context.Background(), store.Put("g", key, []byte(key)), store.Put("last", fmt.Sprint(w), []byte(key)))
				if err != nil {
					t.Errorf("Txn(%s): %v", key, err)
					return
				}
				lsns <- lsn
			}
		})
	}
	wg.Wait()
	close(lsns)
	var got []uint64
	for l := range lsns {
		got = append(got, l)
	}
	slices.Sort(got)
	for i, l := range got {
		if l != uint64(i+1) {
			t.Fatalf("sorted LSNs[%d] = %d, want %d (LSNs must be unique and dense)", i, l, i+1)
		}
	}
	pairs, err := db.Scan(context.Background(), "g", store.ScanOptions{})
	if err != nil || len(pairs) != writers*each {
		t.Fatalf("Scan(g) = %d pairs, %v; want %d", len(pairs), err, writers*each)
	}
	st, err := db.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Txns != writers*each || st.LSN != writers*each {
		t.Errorf("Stats Txns, LSN = %d, %d, want %d", st.Txns, st.LSN, writers*each)
	}
	if st.GroupedCommits == 0 || st.Commits >= st.Txns {
		t.Errorf("Stats: %d commits (%d grouped) for %d txns, want grouping", st.Commits, st.GroupedCommits, st.Txns)
	}
	t.Logf("%d txns in %d commits (%d grouped)", st.Txns, st.Commits, st.GroupedCommits)
	if st.Keys != writers*each+writers || st.Buckets != 2 {
		t.Errorf("Stats Buckets, Keys = %d, %d, want 2, %d", st.Buckets, st.Keys, writers*each+writers)
	}
}

// TestGroupCommitIsolatesFailedConditions puts racing compare-and-sets into
// the same batches: exactly one wins each race, the others fail alone, and
// the unconditional writes around them all apply.
func TestGroupCommitIsolatesFailedConditions(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{BatchDelay: 5 * time.Millisecond})
	const racers = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners, failed := 0, 0
	for i := range racers {
		wg.Go(func() {
			ctx := context.Background()
			if _, err := db.Txn(ctx, store.Put("plain", fmt.Sprint(i), []byte("x"))); err != nil {
				t.Errorf("plain Txn %d: %v", i, err)
			}
			_, err := db.Txn(ctx, store.IfAbsent("race", "winner"), store.Put("race", "winner", []byte(fmt.Sprint(i))))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners++
			case errors.Is(err, store.ErrConditionFailed):
				failed++
			default:
				t.Errorf("racing Txn %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if winners != 1 || failed != racers-1 {
		t.Fatalf("winners, failed = %d, %d, want 1, %d", winners, failed, racers-1)
	}
	pairs, err := db.Scan(context.Background(), "plain", store.ScanOptions{})
	if err != nil || len(pairs) != racers {
		t.Fatalf("Scan(plain) = %d pairs, %v, want %d", len(pairs), err, racers)
	}
	st, _ := db.Stats()
	if st.LSN != racers+1 || st.ConditionFailures != racers-1 {
		t.Fatalf("Stats LSN, ConditionFailures = %d, %d, want %d, %d", st.LSN, st.ConditionFailures, racers+1, racers-1)
	}
}

func TestReopenKeepsDataAndLSN(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := range 5 {
		mustTxn(t, db, store.Put("b", fmt.Sprint(i), []byte{byte(i), 0xff}))
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err = db.Txn(context.Background(), store.Put("b", "late", nil))
	wantErr(t, "Txn after Close", err, store.ErrClosed)
	_, err = db.Get(context.Background(), "b", "1")
	wantErr(t, "Get after Close", err, store.ErrClosed)

	db = mustOpenPath(t, path)
	if got := db.LSN(); got != 5 {
		t.Fatalf("LSN after reopen = %d, want 5", got)
	}
	if got, err := db.Get(context.Background(), "b", "3"); err != nil || !bytes.Equal(got, []byte{3, 0xff}) {
		t.Fatalf("Get(b, 3) after reopen = %v, %v", got, err)
	}
	if lsn := mustTxn(t, db, store.Put("b", "next", nil)); lsn != 6 {
		t.Fatalf("first LSN after reopen = %d, want 6", lsn)
	}
}

func mustOpenPath(tb testing.TB, path string) *boltdb.DB {
	tb.Helper()
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func TestLogEntriesAndRetention(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{LogRetention: 10})
	ctx := context.Background()
	for i := 1; i <= 25; i++ {
		mustTxn(t, db, store.IfAbsent("b", fmt.Sprint(i)), store.Put("b", fmt.Sprint(i), []byte{byte(i)}), store.Delete("b", fmt.Sprint(i-1)))
	}
	entries, err := db.ReadLog(ctx, 16, 100)
	if err != nil {
		t.Fatalf("ReadLog(16): %v", err)
	}
	if len(entries) != 10 {
		t.Fatalf("ReadLog(16) returned %d entries, want 10", len(entries))
	}
	e := entries[0]
	want := boltdb.Entry{LSN: 16, Epoch: 1, Ops: []store.Op{store.Put("b", "16", []byte{16}), store.Delete("b", "15")}}
	if fmt.Sprint(e) != fmt.Sprint(want) {
		t.Fatalf("entry 16 = %+v, want %+v (checks are not logged)", e, want)
	}
	_, err = db.ReadLog(ctx, 15, 100)
	wantErr(t, "ReadLog of a trimmed LSN", err, store.ErrCompacted)
	if entries, err := db.ReadLog(ctx, 26, 100); err != nil || len(entries) != 0 {
		t.Fatalf("ReadLog past the end = %d entries, %v, want none", len(entries), err)
	}
	if entries, err := db.ReadLog(ctx, 20, 3); err != nil || len(entries) != 3 || entries[2].LSN != 22 {
		t.Fatalf("ReadLog(20, max 3) = %v, %v, want LSNs 20..22", entries, err)
	}
	st, err := db.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.LogEntries != 10 || st.LogFirstLSN != 16 || st.Epoch != 1 {
		t.Fatalf("Stats log entries, first LSN, epoch = %d, %d, %d, want 10, 16, 1", st.LogEntries, st.LogFirstLSN, st.Epoch)
	}
}

func TestTxnContextCanceledWhileQueued(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The committer may take the request before noticing the cancellation,
	// so either outcome is allowed, but never a hang or another error.
	if _, err := db.Txn(ctx, store.Put("b", "k", nil)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Txn with a canceled context: %v, want nil or context.Canceled", err)
	}
	_, err := db.Get(ctx, "b", "k")
	wantErr(t, "Get with a canceled context", err, context.Canceled)
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []boltdb.Options{
		{LogRetention: -1}, {MaxBatchTxns: -1}, {MaxBatchBytes: -1}, {BatchDelay: -1},
		{MaxValueBytes: store.MaxValueSize + 1}, {LockTimeout: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Options%+v.Validate() = nil, want an error", o)
		}
	}
	if err := boltdb.DefaultOptions().Validate(); err != nil {
		t.Errorf("DefaultOptions().Validate() = %v", err)
	}
}

// TestApplyEntriesEpochs: a replica that has seen epoch 4 takes, from the
// primary of epoch 4, the entries of epoch 3 it missed (each keeps the
// epoch it was written in); it refuses everything from a primary of an
// older epoch (fencing), and a log whose epochs go backwards.
func TestApplyEntriesEpochs(t *testing.T) {
	put := func(k string) []store.Op { return []store.Op{store.Put("b", k, []byte(k))} }
	db := mustOpenDB(t, boltdb.Options{})
	if err := db.ApplyEntries([]boltdb.Entry{{LSN: 1, Epoch: 2, Ops: put("a")}}, 2); err != nil {
		t.Fatalf("first entry: %v", err)
	}
	// A new primary of epoch 4 was elected; this replica hears of it
	// before the entries of epoch 3 it missed arrive.
	if err := db.SetEpoch(4); err != nil {
		t.Fatal(err)
	}
	if err := db.ApplyEntries([]boltdb.Entry{{LSN: 2, Epoch: 3, Ops: put("b")}}, 3); !errors.Is(err, store.ErrStaleEpoch) {
		t.Fatalf("entries from a deposed primary of epoch 3: %v, want ErrStaleEpoch", err)
	}
	missed := []boltdb.Entry{{LSN: 2, Epoch: 3, Ops: put("b")}, {LSN: 3, Epoch: 3, Ops: put("c")}, {LSN: 4, Epoch: 4, Ops: put("d")}}
	if err := db.ApplyEntries(missed, 4); err != nil {
		t.Fatalf("epoch-3 entries shipped by the primary of epoch 4: %v, want them applied", err)
	}
	if db.LSN() != 4 || db.Epoch() != 4 {
		t.Fatalf("after apply: LSN %d epoch %d, want 4 and 4", db.LSN(), db.Epoch())
	}
	if e, ok, err := db.EntryEpoch(3); err != nil || !ok || e != 3 {
		t.Fatalf("EntryEpoch(3) = %d, %v, %v; want 3: entries keep their own epoch", e, ok, err)
	}
	if v, err := db.Get(context.Background(), "b", "c"); err != nil || string(v) != "c" {
		t.Fatalf("Get(c) = %q, %v", v, err)
	}
	for _, bad := range [][]boltdb.Entry{
		{{LSN: 5, Epoch: 3, Ops: put("e")}}, // older than the entry before it
		{{LSN: 5, Epoch: 5, Ops: put("e")}}, // newer than its primary
		{{LSN: 6, Epoch: 4, Ops: put("e")}}, // a gap
	} {
		if err := db.ApplyEntries(bad, 4); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ApplyEntries(%+v): %v, want ErrInvalid", bad[0], err)
		}
	}
	if db.LSN() != 4 {
		t.Fatalf("a refused batch changed the LSN to %d", db.LSN())
	}
}
