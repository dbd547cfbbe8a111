package launch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// TestPlanGroup: at stage 10 a group with no data of its own begins as a
// copy of the default group's newest data, on its primary and a majority;
// a group with data of its own keeps to it.
func TestPlanGroup(t *testing.T) {
	users := storeGroup{Primary: "users-db-1", Members: []string{"users-db-1", "users-db-2", "users-db-3"}, Failover: true}
	search := storeGroup{Primary: "search-db-1", Members: []string{"search-db-1"}} // --scale replica/search=0
	stage4 := storeGroup{Primary: "db-1", Members: []string{"db-1", "replica-1", "replica-2"}, Failover: true}
	stage9 := []storeData{{Name: "db-1", Pos: pos(3, 1234)}, {Name: "replica-1", Pos: pos(3, 1234)}, {Name: "replica-2", Pos: pos(3, 1230)}}
	with := func(more ...storeData) []storeData { return append(slices.Clone(stage9), more...) }
	empty := boltdb.Position{Epoch: 2} // a group that started empty before and took no write
	for _, c := range []struct {
		name  string
		group storeGroup
		gname string
		found []storeData
		want  string // "from>to" of each carry
	}{
		{"an empty group begins as a copy of stage 9's newest, on a majority of the group", users, "users", stage9,
			"db-1>users-db-1 db-1>users-db-2"},
		{"stage 9 failed over: the new primary's data", users, "users",
			[]storeData{{Name: "db-1", Pos: pos(2, 1200)}, {Name: "replica-1", Pos: pos(3, 1190)}},
			"replica-1>users-db-1 replica-1>users-db-2"},
		{"stage 1's data", users, "users", []storeData{{Name: "node-1", Pos: pos(1, 57)}},
			"node-1>users-db-1 node-1>users-db-2"},
		{"a group without failover: its primary only", search, "search", stage9,
			"db-1>search-db-1"},
		{"the group's stores hold empty logs: still a copy", users, "users",
			with(storeData{Name: "users-db-1", Pos: empty}, storeData{Name: "users-db-2", Pos: empty}, storeData{Name: "users-db-3", Pos: empty}),
			"db-1>users-db-1 db-1>users-db-2"},
		{"the group has data of its own: stage 9's newer data stays out", users, "users",
			with(storeData{Name: "users-db-1", Pos: pos(1, 4)}),
			"users-db-1>users-db-2"},
		{"the group's data on one node only, not the primary: it goes to the primary, not stage 9's", users, "users",
			with(storeData{Name: "users-db-3", Pos: pos(2, 9)}),
			"users-db-3>users-db-1"},
		{"the group's data on a majority: nothing moves", users, "users",
			with(storeData{Name: "users-db-1", Pos: pos(1, 4)}, storeData{Name: "users-db-2", Pos: pos(1, 4)}),
			""},
		{"another group's data never comes in", users, "users",
			[]storeData{{Name: "content-db-1", Pos: pos(5, 99)}},
			""},
		{"no default data: nothing", users, "users", nil, ""},
		{"default data never written: nothing", users, "users",
			[]storeData{{Name: "db-1", Pos: boltdb.Position{Epoch: 1}}, {Name: "users-db-1", Pos: empty}},
			""},
		{"the default group keeps to its own data, never a stage-10 group's", stage4, "",
			with(storeData{Name: "content-db-1", Pos: pos(7, 5000)}),
			""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, k := range planGroup(c.group, c.gname, c.found) {
				got = append(got, k.From.Name+">"+k.To)
			}
			if s := strings.Join(got, " "); s != c.want {
				t.Errorf("planGroup(%q) = %q, want %q", c.gname, s, c.want)
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
// log in db-1 stays out of those that have data (the others begin as a
// copy of it: TestFollowDataSplitsTheMonolith), and within the content group the newest
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

// TestFollowDataSplitsTheMonolith: stage 9 wrote on db-1; stage 10's users
// group ran once before and took no write, content has posts of its own.
// Every group but content begins as a copy of db-1's store, on its primary
// and a second node (a majority of three), without db-1's lease state;
// content keeps its own; and a second start copies nothing.
func TestFollowDataSplitsTheMonolith(t *testing.T) {
	var events bytes.Buffer
	l, nodes := newTestLauncher(t, 10, &events)
	data := filepath.Join(l.cfg.Dir, "data")
	writeStore(t, data, "db-1", segment{1, 5}, segment{3, 20})
	writeJSON(t, filepath.Join(data, "db-1", leaseFile), map[string]any{"vote_epoch": 3, "vote_for": "db-1", "voters": map[string]string{"db-1": "a:7070", "replica-1": "b:7070", "replica-2": "c:7070"}})
	writeStore(t, data, "users-db-1")
	usersVoters := map[string]string{"users-db-1": "u1:7070", "users-db-2": "u2:7070", "users-db-3": "u3:7070"}
	writeJSON(t, filepath.Join(data, "users-db-1", leaseFile), map[string]any{"vote_epoch": 4, "vote_for": "users-db-1", "voters": usersVoters})
	writeStore(t, data, "content-db-1", segment{1, 3})
	writeStore(t, data, "content-db-2", segment{1, 3})

	if err := l.followData(nodes); err != nil {
		t.Fatalf("followData: %v", err)
	}
	out := events.String()
	for _, svc := range []string{"users", "search", "notifications", "payments"} {
		want := fmt.Sprintf("%[1]s-db-1 and %[1]s-db-2 start from db-1's data (epoch 3, log 25): the %[1]s group begins as a copy of the monolith's store; the %[1]s service reads only its own buckets", svc)
		if !strings.Contains(out, want) {
			t.Errorf("followData printed\n%s\nwant a line %q", out, want)
		}
		for _, name := range []string{svc + "-db-1", svc + "-db-2"} {
			if p, err := boltdb.ReadPosition(filepath.Join(data, name, storeFile), time.Second); err != nil || p.LSN != 25 || p.LastEpoch != 3 {
				t.Errorf("%s after followData: %v, %v; want db-1's log (epoch 3, log 25)", name, p, err)
			}
		}
	}
	if n := strings.Count(out, " starts from ") + strings.Count(out, " start from "); n != 4 {
		t.Errorf("followData printed %d carries, want one line for each of the four empty groups:\n%s", n, out)
	}
	if !strings.Contains(out, "; the older store files are kept in ") {
		t.Errorf("followData does not say where users-db-1's empty store went:\n%s", out)
	}
	if p, err := boltdb.ReadPosition(filepath.Join(data, "content-db-1", storeFile), time.Second); err != nil || p.LSN != 3 {
		t.Errorf("content-db-1 after followData: %v, %v; want its own log of 3 entries, not db-1's", p, err)
	}
	// The group's voters are its own: db-1's would count in its majority.
	if ls, err := readLease(filepath.Join(data, "users-db-1", leaseFile)); err != nil || ls.VoteEpoch != 4 || !maps.Equal(ls.Voters, usersVoters) {
		t.Errorf("users-db-1's lease.json = %+v, %v; want its own (epoch 4, the users voters)", ls, err)
	}
	if _, err := os.Stat(filepath.Join(data, "search-db-1", leaseFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("search-db-1's lease.json: %v; want none, not db-1's", err)
	}

	// The copy is a working store of the group's: the users service reads
	// db-1's accounts there.
	db, err := boltdb.Open(filepath.Join(data, "users-db-2", storeFile), boltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get(context.Background(), "posts", "e3-0"); err != nil || string(v) != "db-1" {
		t.Errorf("Get(posts, e3-0) on users-db-2 = %q, %v; want db-1's write", v, err)
	}
	db.Close()

	// The groups now have data of their own: nothing comes from db-1 again,
	// even when it is newer.
	writeStore(t, data, "db-1", segment{5, 1})
	events.Reset()
	if err := l.followData(nodes); err != nil || events.Len() != 0 {
		t.Errorf("second followData: %v, printed %q; want nothing to do", err, events.String())
	}
}
