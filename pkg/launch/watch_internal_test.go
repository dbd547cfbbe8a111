package launch

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
)

// Views of a stage-4 group, as the watcher builds them from /status.
func primaryView(name string, epoch uint64, validMS int64) storeView {
	return storeView{Name: name, Up: true, StoreRole: StoreRole{Role: "primary", Epoch: epoch,
		Lease: &StoreLease{Holder: name, Epoch: epoch, ValidForMS: validMS, TTLMS: 1500}}}
}

func replicaView(name, of string, epoch uint64, heardMS int64) storeView {
	return storeView{Name: name, Up: true, StoreRole: StoreRole{Role: "replica", Epoch: epoch, Primary: of,
		Lease: &StoreLease{Holder: of, Epoch: epoch, HeardMS: heardMS, TTLMS: 1500}}}
}

func down(name string) storeView { return storeView{Name: name} }

// step is one poll and the events it must give, as "kind node epoch".
type step struct {
	after time.Duration // since the first poll
	views []storeView
	want  []string
}

func runSteps(t *testing.T, tr *failoverTracker, steps []step) []Event {
	t.Helper()
	start := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	var all []Event
	for i, s := range steps {
		got := tr.observe(start.Add(s.after), s.views)
		var kinds []string
		for _, e := range got {
			kinds = append(kinds, strings.TrimSpace(e.Kind+" "+e.Node+" "+epochString(e.Epoch)))
		}
		if strings.Join(kinds, "; ") != strings.Join(s.want, "; ") {
			t.Errorf("poll %d (+%s): events %q, want %q", i, s.after, kinds, s.want)
		}
		all = append(all, got...)
	}
	return all
}

func epochString(e uint64) string {
	if e == 0 {
		return ""
	}
	return "e" + string(rune('0'+e))
}

// TestTrackerPrimaryKilled follows a kill -9 of the primary: no primary at
// once, the lease lapses on the voters, a replica wins epoch 3, the other
// replica and then the restarted old primary follow it; every event once.
func TestTrackerPrimaryKilled(t *testing.T) {
	tr := newFailoverTracker()
	healthy := []storeView{primaryView("db-1", 2, 1000), replicaView("replica-1", "db-1", 2, 200), replicaView("replica-2", "db-1", 2, 200)}
	waiting := []storeView{down("db-1"), replicaView("replica-1", "db-1", 2, 400), replicaView("replica-2", "db-1", 2, 400)}
	lapsed := []storeView{down("db-1"), replicaView("replica-1", "db-1", 2, 1600), replicaView("replica-2", "db-1", 2, 1600)}
	won := []storeView{down("db-1"), primaryView("replica-1", 3, 1200), replicaView("replica-2", "db-1", 2, 1700)}
	// replica-2 promised epoch 3 and follows replica-1 before its log has
	// an entry of epoch 3.
	followed := []storeView{down("db-1"), primaryView("replica-1", 3, 1200), replicaView("replica-2", "replica-1", 2, 100)}
	followed[2].Lease.Epoch = 3
	back := []storeView{replicaView("db-1", "replica-1", 3, 100), primaryView("replica-1", 3, 1200), replicaView("replica-2", "replica-1", 3, 100)}
	events := runSteps(t, tr, []step{
		{0, healthy, []string{"primary db-1 e2"}},
		{250 * time.Millisecond, healthy, nil},
		{500 * time.Millisecond, waiting, []string{"no_primary db-1 e2"}},
		{750 * time.Millisecond, waiting, nil},
		{1750 * time.Millisecond, lapsed, []string{"lease_lost db-1 e2"}},
		{2000 * time.Millisecond, lapsed, nil},
		{2750 * time.Millisecond, won, []string{"primary replica-1 e3"}},
		{3000 * time.Millisecond, won, nil},
		{3250 * time.Millisecond, followed, []string{"follows replica-2 e3"}},
		{3500 * time.Millisecond, followed, nil},
		{9000 * time.Millisecond, back, []string{"follows db-1 e3"}},
		{9250 * time.Millisecond, back, nil},
	})
	// The new primary dates itself from the last poll that saw db-1 write.
	e := events[3]
	if e.Previous != "db-1" || e.AfterMS != 2500 {
		t.Errorf("new primary event: previous %q after %dms, want db-1 after 2500ms", e.Previous, e.AfterMS)
	}
	if want := "replica-1 is the primary at epoch 3, 2.5s after db-1 was last seen as primary"; e.Detail != want {
		t.Errorf("detail %q, want %q", e.Detail, want)
	}
	if want := "db-1 is now a replica of replica-1"; events[5].Detail != want {
		t.Errorf("detail %q, want %q", events[5].Detail, want)
	}
}

// TestTrackerPrimaryPaused: a primary that answers but whose lease ran out
// (SIGSTOP, then SIGCONT) lost it, says it itself.
func TestTrackerPrimaryPaused(t *testing.T) {
	tr := newFailoverTracker()
	runSteps(t, tr, []step{
		{0, []storeView{primaryView("db-1", 2, 1000), replicaView("replica-1", "db-1", 2, 100)}, []string{"primary db-1 e2"}},
		{time.Second, []storeView{primaryView("db-1", 2, 0), replicaView("replica-1", "db-1", 2, 900)}, []string{"lease_lost db-1 e2", "no_primary db-1 e2"}},
		{2 * time.Second, []storeView{primaryView("db-1", 2, 0), replicaView("replica-1", "db-1", 2, 1900)}, nil},
		// The stale primary still claims epoch 2 while replica-1 holds 3:
		// the newer epoch is the primary, and db-1 is never shown as one.
		{3 * time.Second, []storeView{primaryView("db-1", 2, 0), primaryView("replica-1", 3, 1000)}, []string{"primary replica-1 e3"}},
		{4 * time.Second, []storeView{replicaView("db-1", "replica-1", 3, 50), primaryView("replica-1", 3, 1000)}, []string{"follows db-1 e3"}},
	})
}

// TestTrackerHandOver: `node stop` of the primary hands the lease over;
// the new primary is one event, with no lease_lost or no_primary before it.
func TestTrackerHandOver(t *testing.T) {
	tr := newFailoverTracker()
	runSteps(t, tr, []step{
		{0, []storeView{primaryView("db-1", 2, 1000), replicaView("replica-1", "db-1", 2, 100)}, []string{"primary db-1 e2"}},
		{250 * time.Millisecond, []storeView{replicaView("db-1", "replica-1", 3, 10), primaryView("replica-1", 3, 1400)}, []string{"primary replica-1 e3", "follows db-1 e3"}},
		// An older epoch that still looks writable never takes it back.
		{500 * time.Millisecond, []storeView{primaryView("db-1", 2, 500), primaryView("replica-1", 3, 1400)}, nil},
	})
}

// TestTrackerWithoutFailover: a lone primary without a lease (stages 1 to
// 3) is primary; when it dies there is no primary until it is back.
func TestTrackerWithoutFailover(t *testing.T) {
	tr := newFailoverTracker()
	lone := storeView{Name: "db-1", Up: true, StoreRole: StoreRole{Role: "primary", Epoch: 1}}
	runSteps(t, tr, []step{
		{0, []storeView{lone}, []string{"primary db-1 e1"}},
		{time.Second, []storeView{down("db-1")}, []string{"no_primary db-1 e1"}},
		{2 * time.Second, []storeView{down("db-1")}, nil},
		{3 * time.Second, []storeView{lone}, []string{"primary db-1 e1"}},
	})
}

// TestEventsFileFormat: one JSON object per line, with the documented keys.
func TestEventsFileFormat(t *testing.T) {
	dir := t.TempDir()
	var printed bytes.Buffer
	l := &Launcher{cfg: Config{Dir: dir, Events: &printed}, log: slog.New(slog.DiscardHandler)}
	e := Event{Time: time.Date(2026, 12, 7, 20, 0, 2, 500e6, time.UTC), Kind: EventPrimary, Node: "replica-1", Epoch: 3,
		Previous: "db-1", AfterMS: 2300, Detail: "replica-1 is the primary at epoch 3, 2.3s after db-1 was last seen as primary"}
	l.emit(e)
	l.emit(Event{Kind: EventExited, Node: "db-1", Detail: "db-1 exited (pid 7): killed by SIGKILL"})
	if !strings.Contains(printed.String(), e.Detail) || !strings.Contains(printed.String(), "db-1 exited (pid 7)") {
		t.Errorf("the terminal got %q, want both events' details", printed.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%s has %d lines, want 2:\n%s", EventsFile, len(lines), b)
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "kind", "node", "epoch", "previous", "after_ms", "detail"} {
		if _, ok := m[k]; !ok {
			t.Errorf("event line %s lacks %q", lines[0], k)
		}
	}
	got, err := ReadEvents(dir)
	if err != nil || len(got) != 2 || got[0] != e || got[1].Kind != EventExited || got[1].Time.IsZero() {
		t.Errorf("ReadEvents = %+v, %v; want the two events, the first %+v, the second timed", got, err, e)
	}
}

// fakeStore answers /status like a store node's admin port, with a role
// the test changes; a paused one never answers in time.
type fakeStore struct {
	name   string
	mu     sync.Mutex
	role   StoreRole
	paused bool
}

func (f *fakeStore) set(r StoreRole, paused bool) {
	f.mu.Lock()
	f.role, f.paused = r, paused
	f.mu.Unlock()
}

func (f *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	role, paused := f.role, f.paused
	f.mu.Unlock()
	if paused {
		<-r.Context().Done()
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"name": f.name, "sections": map[string]any{"store": map[string]any{"replication": role}}})
}

// TestWatcherPollsStoreNodes runs the watcher of a launcher against two
// fake store nodes: the primary stops answering (paused), the replica
// takes over; node up's events and events.jsonl say so, once each.
func TestWatcherPollsStoreNodes(t *testing.T) {
	db, rep := &fakeStore{name: "db-1"}, &fakeStore{name: "replica-1"}
	lease := func(holder string, epoch uint64, valid int64) *StoreLease {
		return &StoreLease{Holder: holder, Epoch: epoch, ValidForMS: valid, TTLMS: 1500}
	}
	db.set(StoreRole{Role: "primary", Epoch: 2, Lease: lease("db-1", 2, 1000)}, false)
	rep.set(StoreRole{Role: "replica", Epoch: 2, Primary: "db-1", Lease: lease("db-1", 2, 0)}, false)
	var nodes []Node
	for _, f := range []*fakeStore{db, rep} {
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		role := "replica"
		if f == db {
			role = "primary"
		}
		nodes = append(nodes, Node{Name: f.name, Roles: []string{role}, Admin: strings.TrimPrefix(srv.URL, "http://"), Running: true})
	}
	dir := t.TempDir()
	events := &syncbuf.Buffer{}
	l := &Launcher{cfg: Config{Dir: dir, Events: events}, log: slog.New(slog.DiscardHandler), st: State{Dir: dir, Nodes: nodes}}
	l.ready.Store(true)
	l.startWatch()
	defer l.stopWatch()

	testwait.Until(t, 5*time.Second, "the first primary", func() bool {
		return strings.Contains(events.String(), "db-1 is the primary at epoch 2")
	})
	db.set(StoreRole{}, true)
	testwait.Until(t, 10*time.Second, "no primary", func() bool {
		return strings.Contains(events.String(), "no primary: db-1 (epoch 2)")
	})
	rep.set(StoreRole{Role: "primary", Epoch: 3, Lease: lease("replica-1", 3, 1000)}, false)
	testwait.Until(t, 5*time.Second, "the new primary", func() bool {
		return strings.Contains(events.String(), "replica-1 is the primary at epoch 3, ")
	})
	l.stopWatch()
	if n := strings.Count(events.String(), "no primary"); n != 1 {
		t.Errorf("no primary printed %d times, want once:\n%s", n, events)
	}
	got, err := ReadEvents(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, e.Kind+" "+e.Node)
	}
	if want := "primary db-1,no_primary db-1,primary replica-1"; strings.Join(kinds, ",") != want {
		t.Errorf("%s kinds %q, want %q", EventsFile, strings.Join(kinds, ","), want)
	}
}

// TestWatcherPerGroup runs the watcher over two store groups of stage 10:
// content's primary fails over while users' stays; each event names its
// group, and users' primary is not taken for content's (or the reverse).
func TestWatcherPerGroup(t *testing.T) {
	lease := func(holder string, epoch uint64, valid int64) *StoreLease {
		return &StoreLease{Holder: holder, Epoch: epoch, ValidForMS: valid, TTLMS: 1500}
	}
	c1, c2, u1 := &fakeStore{name: "content-db-1"}, &fakeStore{name: "content-db-2"}, &fakeStore{name: "users-db-1"}
	c1.set(StoreRole{Group: "content", Role: "primary", Epoch: 1, Lease: lease("content-db-1", 1, 1000)}, false)
	c2.set(StoreRole{Group: "content", Role: "replica", Epoch: 1, Primary: "content-db-1", Lease: lease("content-db-1", 1, 0)}, false)
	// users' primary is at a higher epoch than content's new one will be:
	// one tracker for both would never announce content-db-2.
	u1.set(StoreRole{Group: "users", Role: "primary", Epoch: 5, Lease: lease("users-db-1", 5, 1000)}, false)
	var nodes []Node
	for _, f := range []*fakeStore{c1, c2, u1} {
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		group, _, _ := strings.Cut(f.name, "-")
		nodes = append(nodes, Node{Name: f.name, Roles: []string{"replica"}, Group: group, Admin: strings.TrimPrefix(srv.URL, "http://"), Running: true})
	}
	dir := t.TempDir()
	events := &syncbuf.Buffer{}
	l := &Launcher{cfg: Config{Dir: dir, Events: events}, log: slog.New(slog.DiscardHandler), st: State{Dir: dir, Nodes: nodes}}
	l.ready.Store(true)
	l.startWatch()
	defer l.stopWatch()

	testwait.Until(t, 5*time.Second, "both groups' primaries", func() bool {
		return strings.Contains(events.String(), "content group: content-db-1 is the primary at epoch 1") &&
			strings.Contains(events.String(), "users group: users-db-1 is the primary at epoch 5")
	})
	c1.set(StoreRole{}, true)
	c2.set(StoreRole{Group: "content", Role: "primary", Epoch: 2, Lease: lease("content-db-2", 2, 1000)}, false)
	testwait.Until(t, 10*time.Second, "content's new primary", func() bool {
		return strings.Contains(events.String(), "content group: content-db-2 is the primary at epoch 2, ")
	})
	l.stopWatch()
	if strings.Contains(events.String(), "users group: no primary") {
		t.Errorf("users' primary was reported lost:\n%s", events)
	}
	got, err := ReadEvents(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if want, _, _ := strings.Cut(e.Node, "-"); e.Group != want {
			t.Errorf("event %q has group %q, want %q", e.Detail, e.Group, want)
		}
	}
	if r := (StoreRole{Group: "content", Role: "primary", Epoch: 2, Lease: lease("content-db-2", 2, 1000)}); r.Describe("content-db-2") != "primary of content (epoch 2)" {
		t.Errorf("Describe = %q, want primary of content (epoch 2)", r.Describe("content-db-2"))
	}
	if r := (StoreRole{Group: "content", Role: "replica", Epoch: 2, Primary: "content-db-2"}); r.Describe("content-db-1") != "replica of content-db-2 in content (epoch 2)" {
		t.Errorf("Describe = %q, want replica of content-db-2 in content (epoch 2)", r.Describe("content-db-1"))
	}
	if r := (StoreRole{Group: "default", Role: "primary", Epoch: 3}); r.Describe("db-1") != "primary (epoch 3)" {
		t.Errorf("Describe = %q in the default group, want primary (epoch 3)", r.Describe("db-1"))
	}
}
