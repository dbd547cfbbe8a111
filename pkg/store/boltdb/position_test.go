package boltdb_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func TestReadPositionOfAClosedStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustTxn(t, db, store.Put("posts", fmt.Sprint(i), []byte("x")))
	}
	// A failover: the store is now primary at epoch 3 and writes in it.
	if err := db.SetEpoch(3); err != nil {
		t.Fatal(err)
	}
	mustTxn(t, db, store.Put("posts", "after", []byte("y")))
	if err := db.SetEpoch(4); err != nil { // promoted again, wrote nothing yet
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	got, err := boltdb.ReadPosition(path, time.Second)
	if err != nil {
		t.Fatalf("ReadPosition: %v", err)
	}
	want := boltdb.Position{LSN: 4, Epoch: 4, LastEpoch: 3}
	if got != want {
		t.Fatalf("ReadPosition = %+v, want %+v", got, want)
	}
	// Read-only: the file opens again as a store, at the same place.
	db2 := mustOpenPath(t, path)
	if db2.LSN() != 4 || db2.Epoch() != 4 {
		t.Fatalf("reopened at LSN %d epoch %d, want 4 and 4", db2.LSN(), db2.Epoch())
	}
}

func TestReadPositionOfANewStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	got, err := boltdb.ReadPosition(path, time.Second)
	if want := (boltdb.Position{Epoch: 1}); err != nil || got != want {
		t.Fatalf("ReadPosition of an empty store = %+v, %v; want %+v", got, err, want)
	}
}

func TestReadPositionOfAStoreInUse(t *testing.T) {
	db := mustOpenDB(t, boltdb.Options{})
	mustTxn(t, db, store.Put("b", "k", nil))
	_, err := boltdb.ReadPosition(db.Path(), 50*time.Millisecond)
	if !errors.Is(err, boltdb.ErrLocked) {
		t.Fatalf("ReadPosition of an open store: err = %v, want ErrLocked", err)
	}
}

func TestReadPositionRefusesWhatIsNotAStore(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte("this is not a bbolt file, it is a sentence that is long enough"), 0o600); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(dir, "bare.db") // a bbolt file without the store's buckets
	b, err := bolt.Open(bare, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	for _, path := range []string{garbage, bare} {
		if _, err := boltdb.ReadPosition(path, time.Second); !errors.Is(err, boltdb.ErrNotStore) {
			t.Errorf("ReadPosition(%s): err = %v, want ErrNotStore", filepath.Base(path), err)
		}
	}
	if _, err := boltdb.ReadPosition(filepath.Join(dir, "missing.db"), time.Second); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPosition of a missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestPositionNewer(t *testing.T) {
	for _, c := range []struct {
		p, q boltdb.Position
		want bool
	}{
		{boltdb.Position{LastEpoch: 2, LSN: 10}, boltdb.Position{LastEpoch: 2, LSN: 9}, true},
		{boltdb.Position{LastEpoch: 2, LSN: 9}, boltdb.Position{LastEpoch: 2, LSN: 10}, false},
		{boltdb.Position{LastEpoch: 2, LSN: 10}, boltdb.Position{LastEpoch: 2, LSN: 10}, false},
		// A newer epoch wins over a longer log of an older one: the old
		// primary's extra entries were never acknowledged.
		{boltdb.Position{LastEpoch: 3, LSN: 1190}, boltdb.Position{LastEpoch: 2, LSN: 1200}, true},
		{boltdb.Position{LastEpoch: 2, LSN: 1200}, boltdb.Position{LastEpoch: 3, LSN: 1190}, false},
		// The epoch the store would write next does not count: promoted
		// but never written, its log is what it was.
		{boltdb.Position{Epoch: 5, LastEpoch: 2, LSN: 10}, boltdb.Position{Epoch: 2, LastEpoch: 2, LSN: 11}, false},
		{boltdb.Position{LastEpoch: 1, LSN: 1}, boltdb.Position{}, true},
	} {
		if got := c.p.Newer(c.q); got != c.want {
			t.Errorf("%+v.Newer(%+v) = %v, want %v", c.p, c.q, got, c.want)
		}
	}
}
