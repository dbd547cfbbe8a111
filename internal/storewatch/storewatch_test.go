package storewatch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/storewatch"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// fakeNode answers /v1/status with whatever replication status it is set
// to, and only with the token "t".
type fakeNode struct {
	mu sync.Mutex
	st server.ReplicationStatus
}

func (f *fakeNode) set(st server.ReplicationStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
}

func startFake(t *testing.T, name string, st server.ReplicationStatus) (*fakeNode, storewatch.Node) {
	f := &fakeNode{st: st}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		rs := f.st
		f.mu.Unlock()
		json.NewEncoder(w).Encode(server.Status{Ready: true, Replication: &rs})
	}))
	t.Cleanup(srv.Close)
	return f, storewatch.Node{Name: name, Addr: strings.TrimPrefix(srv.URL, "http://"), Token: "t"}
}

func lease(validMS int64) *server.LeaseStatus { return &server.LeaseStatus{ValidForMS: validMS} }

func TestPrimaryAndNewPrimary(t *testing.T) {
	ctx := context.Background()
	db1, n1 := startFake(t, "db-1", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2, Lease: lease(1000)})
	db2, n2 := startFake(t, "db-2", server.ReplicationStatus{Role: server.RoleReplica, Epoch: 2})
	nodes := []storewatch.Node{n1, n2}

	p, st, err := storewatch.Primary(ctx, nodes)
	if err != nil || p.Name != "db-1" || st.Epoch != 2 {
		t.Fatalf("Primary = %s at %d, %v; want db-1 at 2", p.Name, st.Epoch, err)
	}
	if _, _, err := storewatch.NewPrimary(ctx, nodes, "db-1", 2); err == nil {
		t.Fatalf("NewPrimary while db-1 still leads: nil error, want one")
	}
	// A paused primary resumed: it still says primary, with its lease run
	// out, beside the new one. Only the new one counts.
	db1.set(server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2, Lease: lease(0)})
	db2.set(server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3, Lease: lease(1000)})
	p, st, err = storewatch.NewPrimary(ctx, nodes, "db-1", 2)
	if err != nil || p.Name != "db-2" || st.Epoch != 3 {
		t.Fatalf("NewPrimary = %s at %d, %v; want db-2 at 3", p.Name, st.Epoch, err)
	}
	db1.set(server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3, Lease: lease(1000)})
	if _, _, err := storewatch.Primary(ctx, nodes); err == nil || !strings.Contains(err.Error(), "several") {
		t.Fatalf("Primary with two leading nodes: %v, want an error naming several", err)
	}
	if _, err := storewatch.Replication(ctx, storewatch.Node{Name: "db-1", Addr: n1.Addr}); err == nil {
		t.Fatalf("Replication without the token: nil error, want the 401")
	}
}

func TestWatchPollsEveryNode(t *testing.T) {
	db1, n1 := startFake(t, "db-1", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2, Lease: lease(1000)})
	_, n2 := startFake(t, "db-2", server.ReplicationStatus{Role: server.RoleReplica, Epoch: 2})
	w := storewatch.Watch([]storewatch.Node{n1, n2}, 5*time.Millisecond)
	defer w.Stop()
	testwait.RetryUntil(t, 5*time.Second, w.SawAll)
	db1.set(server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3, Lease: lease(1000)})
	testwait.Until(t, 5*time.Second, "epoch 3 seen", func() bool { return w.MaxBefore(time.Now()) == 3 })
	w.Stop()
	if got := w.Primaries(); !slices.Equal(got[2], []string{"db-1"}) || !slices.Equal(got[3], []string{"db-1"}) {
		t.Errorf("Primaries = %v, want db-1 in epochs 2 and 3", got)
	}
	if got := w.Now(); got != "[db-1@3]" {
		t.Errorf("Now after Stop = %q, want the last answers, [db-1@3]", got)
	}
}

// The record's questions, on answers recorded by hand at known times.
func TestEpochsRecord(t *testing.T) {
	t0 := time.Now()
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := storewatch.NewEpochs()
	w.Record("db-1", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2}, at(0))
	w.Record("db-2", server.ReplicationStatus{Role: server.RoleReplica, Epoch: 2}, at(0.1))
	w.Record("db-2", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3}, at(5))
	w.Record("db-1", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 2}, at(5.1)) // paused, resumed
	w.Record("db-2", server.ReplicationStatus{Role: server.RolePrimary, Epoch: 3}, at(6))

	if got := w.FirstSeenIn(at(1), at(10)); !slices.Equal(got, []uint64{3}) {
		t.Errorf("FirstSeenIn(1s, 10s) = %v, want [3]", got)
	}
	if got := w.FirstSeenIn(at(6), at(10)); len(got) != 0 {
		t.Errorf("FirstSeenIn(6s, 10s) = %v, want none", got)
	}
	if got := w.MaxBefore(at(5)); got != 2 {
		t.Errorf("MaxBefore(5s) = %d, want 2 (epoch 3 was first seen at 5s)", got)
	}
	if got, ok := w.SaidPrimary("db-2", 3); !ok || !got.Equal(at(5)) {
		t.Errorf("SaidPrimary(db-2, 3) = %v, %v; want the first poll, at 5s", got, ok)
	}
	if got := w.PrimariesAtOrAbove(2, "db-2"); !slices.Equal(got, []string{"db-1@2"}) {
		t.Errorf("PrimariesAtOrAbove(2, db-2) = %v, want [db-1@2]", got)
	}
	if got := w.Now(); got != "[db-1@2 db-2@3]" {
		t.Errorf("Now = %q, want both nodes that say primary", got)
	}
	if got := w.Above(2); !slices.Equal(got, []uint64{3}) {
		t.Errorf("Above(2) = %v, want [3]", got)
	}
	if got, want := w.String(), "5 answers; epoch 2: primary [db-1]; epoch 3: primary [db-2]"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	w.Forget("db-1")
	if got := w.Now(); got != "[db-2@3]" {
		t.Errorf("Now after db-1 stopped answering = %q, want [db-2@3]", got)
	}
}
