package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

func pos(epoch, lsn uint64) boltdb.Position {
	return boltdb.Position{LSN: lsn, Epoch: epoch, LastEpoch: epoch}
}

func TestPlanCarries(t *testing.T) {
	stage2 := storeGroup{Primary: "db-1", Members: []string{"db-1"}}
	stage4 := storeGroup{Primary: "db-1", Members: []string{"db-1", "replica-1", "replica-2"}, Failover: true}
	for _, c := range []struct {
		name  string
		group storeGroup
		found []storeData
		want  string // "from>to" of each carry
	}{
		{"stage 4 failed over, then stage 2: the new primary's data goes to db-1", stage2,
			[]storeData{{Name: "db-1", Pos: pos(2, 1200)}, {Name: "replica-1", Pos: pos(3, 1234)}, {Name: "replica-2", Pos: pos(3, 1230)}},
			"replica-1>db-1"},
		{"a higher epoch with a shorter log is newer: db-1's extra entries were never acknowledged", stage2,
			[]storeData{{Name: "db-1", Pos: pos(2, 1200)}, {Name: "replica-1", Pos: pos(3, 1190)}},
			"replica-1>db-1"},
		{"stage 1, then stage 2: node-1's data goes to db-1, which has none", stage2,
			[]storeData{{Name: "node-1", Pos: pos(1, 57)}},
			"node-1>db-1"},
		{"stage 2, then stage 1: db-1's data goes back to node-1",
			storeGroup{Primary: "node-1", Members: []string{"node-1"}},
			[]storeData{{Name: "db-1", Pos: pos(1, 80)}, {Name: "node-1", Pos: pos(1, 57)}},
			"db-1>node-1"},
		{"the primary holds the newest: nothing moves", stage2,
			[]storeData{{Name: "db-1", Pos: pos(3, 1300)}, {Name: "replica-1", Pos: pos(3, 1234)}},
			""},
		{"the same log on two nodes: the primary keeps its own", stage2,
			[]storeData{{Name: "db-1", Pos: pos(1, 10)}, {Name: "node-1", Pos: pos(1, 10)}},
			""},
		{"nothing was ever written", stage2,
			[]storeData{{Name: "db-1", Pos: boltdb.Position{Epoch: 1}}, {Name: "node-1", Pos: boltdb.Position{Epoch: 1}}},
			""},
		{"failover: both replicas hold the newest, a majority already", stage4,
			[]storeData{{Name: "db-1", Pos: pos(2, 1200)}, {Name: "replica-1", Pos: pos(3, 1234)}, {Name: "replica-2", Pos: pos(3, 1234)}},
			"replica-1>db-1"},
		{"failover after stage 2 wrote on db-1 alone: a majority must hold it, or the replicas could elect each other", stage4,
			[]storeData{{Name: "db-1", Pos: pos(3, 1300)}, {Name: "replica-1", Pos: pos(3, 1234)}, {Name: "replica-2", Pos: pos(3, 1234)}},
			"db-1>replica-1"},
		{"failover, stage 1's data only", stage4,
			[]storeData{{Name: "node-1", Pos: pos(1, 57)}},
			"node-1>db-1 node-1>replica-1"},
		{"failover: newest on a replica and nowhere else", stage4,
			[]storeData{{Name: "db-1", Pos: pos(2, 1200)}, {Name: "replica-1", Pos: pos(3, 1234)}, {Name: "replica-2", Pos: pos(2, 1200)}},
			"replica-1>db-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, k := range planCarries(c.group, c.found) {
				got = append(got, k.From.Name+">"+k.To)
			}
			if s := strings.Join(got, " "); s != c.want {
				t.Errorf("planCarries = %q, want %q", s, c.want)
			}
		})
	}
}

func TestStoreGroupOfStages(t *testing.T) {
	for _, c := range []struct {
		stage int
		group string
		want  string
	}{
		{stage: 1, want: "primary node-1, members [node-1], failover false"},
		{stage: 2, want: "primary db-1, members [db-1], failover false"},
		{stage: 4, want: "primary db-1, members [db-1 replica-1 replica-2], failover true"},
		{stage: 9, want: "primary db-1, members [db-1 replica-1 replica-2], failover true"},
		{stage: 10, group: "content", want: "primary content-db-1, members [content-db-1 content-db-2 content-db-3], failover true"},
		{stage: 10, want: "primary , members [], failover false"},
	} {
		st, err := LookupStage(c.stage)
		if err != nil {
			t.Fatal(err)
		}
		p := planner{dir: "/s", base: netip.MustParseAddr("127.0.6.2"), logLevel: "info"}
		nodes, err := p.plan(st)
		if err != nil {
			t.Fatal(err)
		}
		g := storeGroupOf(st, nodes, c.group)
		if got := fmt.Sprintf("primary %s, members %v, failover %v", g.Primary, g.Members, g.Failover); got != c.want {
			t.Errorf("stage %d group %q: %s, want %s", c.stage, c.group, got, c.want)
		}
	}
}

// Stage 10's store directories are named after their group; the stages
// before it share one group.
func TestDataGroup(t *testing.T) {
	for name, want := range map[string]string{
		"db-1": "", "replica-3": "", "node-1": "", "content-db-2": "content",
		"notifications-db-11": "notifications", "content-1": "", "x-db-y": "", "-db-1": "",
	} {
		if got := dataGroup(name); got != want {
			t.Errorf("dataGroup(%q) = %q, want %q", name, got, want)
		}
	}
}

// segment is a run of n writes by a primary of one epoch.
type segment struct{ epoch, n uint64 }

// writeStore writes a real store file in dataDir/name: each segment's
// writes at its epoch, the values naming the node.
func writeStore(t testing.TB, dataDir, name string, segs ...segment) {
	t.Helper()
	dir := filepath.Join(dataDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := boltdb.Open(filepath.Join(dir, storeFile), boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range segs {
		if err := db.SetEpoch(s.epoch); err != nil {
			t.Fatal(err)
		}
		for i := range s.n {
			if _, err := db.Txn(context.Background(), store.Put("posts", fmt.Sprintf("e%d-%d", s.epoch, i), []byte(name))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTestLauncher(t testing.TB, stage int, events *bytes.Buffer) (*Launcher, []Node) {
	t.Helper()
	st, err := LookupStage(stage)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Stage: st, Dir: t.TempDir(), Binary: "/bin/true", Roles: []string{"primary", "replica"}, LogLevel: "info", ReadyTimeout: time.Second, StopTimeout: time.Second, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	p := planner{dir: l.cfg.Dir, base: netip.MustParseAddr("127.0.6.2"), logLevel: "info"}
	nodes, err := p.plan(st)
	if err != nil {
		t.Fatal(err)
	}
	return l, nodes
}

// TestFollowDataAfterAFailover: stage 4 failed over to replica-1 (epoch 2),
// which took writes; stage 2 starts db-1 from replica-1's data, keeps
// db-1's own in a directory aside, and keeps db-1's JetStream directory.
func TestFollowDataAfterAFailover(t *testing.T) {
	var events bytes.Buffer
	l, nodes := newTestLauncher(t, 2, &events)
	data := filepath.Join(l.cfg.Dir, "data")
	// db-1 wrote 5 at epoch 1, then 2 more nobody acknowledged before it died.
	writeStore(t, data, "db-1", segment{1, 7})
	writeJSON(t, filepath.Join(data, "db-1", leaseFile), map[string]any{"vote_epoch": 1, "vote_for": "db-1", "voters": map[string]string{"db-1": "a:7070", "replica-1": "b:7070"}})
	if err := os.MkdirAll(filepath.Join(data, "db-1", "nats", "jetstream"), 0o755); err != nil {
		t.Fatal(err)
	}
	// replica-1 had 5, won epoch 2 and acknowledged one more: a shorter log,
	// but the newer one.
	writeStore(t, data, "replica-1", segment{1, 5}, segment{2, 1})
	writeJSON(t, filepath.Join(data, "replica-1", leaseFile), map[string]any{"vote_epoch": 2, "vote_for": "replica-1", "voters": map[string]string{"db-1": "a:7070", "replica-1": "b:7070", "replica-2": "c:7070"}})
	writeStore(t, data, "app-1") // not a store node of any stage, still a store file: counted, older

	if err := l.followData(nodes); err != nil {
		t.Fatalf("followData: %v", err)
	}
	got, err := boltdb.ReadPosition(filepath.Join(data, "db-1", storeFile), time.Second)
	if want := (boltdb.Position{LSN: 6, Epoch: 2, LastEpoch: 2}); err != nil || got != want {
		t.Fatalf("db-1's store after the carry: %+v, %v; want replica-1's %+v", got, err, want)
	}
	asides, _ := filepath.Glob(filepath.Join(data, "db-1"+asideMark+"*"))
	if len(asides) != 1 {
		t.Fatalf("directories aside = %v, want one", asides)
	}
	if old, err := boltdb.ReadPosition(filepath.Join(asides[0], storeFile), time.Second); err != nil || old.LSN != 7 {
		t.Errorf("db-1's older store aside: %+v, %v; want LSN 7, kept", old, err)
	}
	if _, err := os.Stat(filepath.Join(data, "db-1", "nats", "jetstream")); err != nil {
		t.Errorf("db-1's own JetStream directory: %v, want it kept in data/db-1", err)
	}
	if _, err := os.Stat(filepath.Join(asides[0], "nats")); err == nil {
		t.Errorf("db-1's JetStream directory was moved aside, want only the store's files there")
	}
	lease, err := readLease(filepath.Join(data, "db-1", leaseFile))
	if err != nil || lease.VoteEpoch != 2 || len(lease.Voters) != 3 {
		t.Errorf("db-1's lease.json = %+v, %v; want the newest promise (epoch 2) and the three voters", lease, err)
	}
	line := events.String()
	for _, want := range []string{"db-1 starts from replica-1's data (epoch 2, log 6); its older data (epoch 1, log 7) is kept in ", filepath.Base(asides[0])} {
		if !strings.Contains(line, want) {
			t.Errorf("event = %q, want it to contain %q", line, want)
		}
	}

	// The carried file is a working store for db-1: it reads replica-1's
	// writes and takes the next LSN.
	db, err := boltdb.Open(filepath.Join(data, "db-1", storeFile), boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get(context.Background(), "posts", "e2-0"); err != nil || string(v) != "replica-1" {
		t.Errorf("Get(posts, e2-0) on db-1 = %q, %v; want replica-1's write", v, err)
	}
	if lsn, err := db.Txn(context.Background(), store.Put("posts", "next", nil)); err != nil || lsn != 7 {
		t.Errorf("next write on db-1: LSN %d, %v; want 7", lsn, err)
	}
	db.Close()

	// Again: db-1 is now the newest, nothing moves.
	events.Reset()
	if err := l.followData(nodes); err != nil || events.Len() != 0 {
		t.Errorf("second followData: %v, printed %q; want nothing to do", err, events.String())
	}
}

// TestFollowDataFromStage1: node-1's data becomes db-1's at stage 2, and
// node-1 keeps its own (nothing is moved from a source).
func TestFollowDataFromStage1(t *testing.T) {
	var events bytes.Buffer
	l, nodes := newTestLauncher(t, 2, &events)
	data := filepath.Join(l.cfg.Dir, "data")
	writeStore(t, data, "node-1", segment{1, 4})
	// db-1 ran before without ever opening a store (its NATS did).
	if err := os.MkdirAll(filepath.Join(data, "db-1", "nats"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.followData(nodes); err != nil {
		t.Fatal(err)
	}
	if asides, _ := filepath.Glob(filepath.Join(data, "*"+asideMark+"*")); len(asides) != 0 {
		t.Errorf("directories aside = %v, want none: db-1 had no store data", asides)
	}
	if _, err := os.Stat(filepath.Join(data, "db-1", "nats")); err != nil {
		t.Errorf("db-1's own nats directory: %v", err)
	}
	for _, name := range []string{"node-1", "db-1"} {
		if p, err := boltdb.ReadPosition(filepath.Join(data, name, storeFile), time.Second); err != nil || p.LSN != 4 {
			t.Errorf("%s: %+v, %v; want LSN 4", name, p, err)
		}
	}
	if got, want := events.String(), "db-1 starts from node-1's data (epoch 1, log 4)\n"; !strings.HasSuffix(got, want) {
		t.Errorf("event = %q, want it to end in %q", got, want)
	}
}

func TestFollowDataRefusesWhatItCannotRead(t *testing.T) {
	l, nodes := newTestLauncher(t, 2, nil)
	data := filepath.Join(l.cfg.Dir, "data")
	writeStore(t, data, "replica-1", segment{1, 3})
	if err := os.MkdirAll(filepath.Join(data, "db-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(data, "db-1", storeFile)
	if err := os.WriteFile(broken, bytes.Repeat([]byte("not a store "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	err := l.followData(nodes)
	if err == nil || !strings.Contains(err.Error(), "--fresh") || !strings.Contains(err.Error(), "mv "+filepath.Join(data, "db-1")) {
		t.Fatalf("followData with a damaged store file: %v, want an error naming mv and --fresh", err)
	}
	if b, _ := os.ReadFile(broken); !bytes.HasPrefix(b, []byte("not a store")) {
		t.Errorf("the damaged file was changed")
	}

	// A store file a running node holds.
	os.Remove(broken)
	db, err := boltdb.Open(broken, boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := l.followData(nodes); err == nil || !strings.Contains(err.Error(), "still runs") || !strings.Contains(err.Error(), "lsof "+broken) {
		t.Fatalf("followData with a store file in use: %v, want an error saying a node still runs, and how to find it", err)
	}
}

// Stage 10's store groups have histories of their own: stage 9's newer
// log in db-1 stays out of them, and within the content group the newest
// log (content-db-2's, after a failover) goes to its primary, and each
// group's newest log to a majority of that group only.
func TestFollowDataStaysWithinItsGroup(t *testing.T) {
	var events bytes.Buffer
	l, nodes := newTestLauncher(t, 10, &events)
	data := filepath.Join(l.cfg.Dir, "data")
	writeStore(t, data, "db-1", segment{1, 5}, segment{2, 20}) // stage 9's, the newest of all
	writeStore(t, data, "content-db-1", segment{1, 3})
	writeStore(t, data, "content-db-2", segment{1, 3}, segment{2, 2}) // content failed over to it
	writeStore(t, data, "users-db-1", segment{1, 4})
	if err := l.followData(nodes); err != nil {
		t.Fatalf("followData: %v", err)
	}
	var carried []string
	for line := range strings.Lines(events.String()) {
		if i := strings.Index(line, " starts from "); i >= 0 {
			carried = append(carried, line[strings.LastIndex(line[:i], " ")+1:i]+" from "+strings.Fields(line[i+len(" starts from "):])[0])
		}
	}
	// users-db-1 alone holds users' log: users-db-2 gets a copy so that a
	// majority does; content-db-1, the primary, gets content-db-2's.
	want := []string{"users-db-2 from users-db-1's", "content-db-1 from content-db-2's"}
	if !slices.Equal(carried, want) {
		t.Errorf("carried %q, want %q:\n%s", carried, want, events.String())
	}
	if pos, err := boltdb.ReadPosition(filepath.Join(data, "users-db-1", storeFile), time.Second); err != nil || pos.LSN != 4 {
		t.Errorf("users-db-1 after followData: %v, %v; want its own log of 4 entries, not db-1's", pos, err)
	}
}
