package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// leaseMsg is a lease message as another store node would send it.
type leaseMsg struct {
	Op        string `json:"op"`
	Epoch     uint64 `json:"epoch"`
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	LastEpoch uint64 `json:"last_epoch,omitempty"`
	LastLSN   uint64 `json:"last_lsn,omitempty"`
}

type leaseReply struct {
	Granted bool   `json:"granted"`
	Epoch   uint64 `json:"epoch"`
	Leader  string `json:"leader"`
	Reason  string `json:"reason"`
}

// sendLease posts m to the store node s and returns its answer.
func sendLease(tb testing.TB, s *server.Server, m leaseMsg) leaseReply {
	tb.Helper()
	b, _ := json.Marshal(m)
	resp, err := http.Post("http://"+s.Addr()+"/v1/lease", "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("POST /v1/lease: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("POST /v1/lease: status %d", resp.StatusCode)
	}
	var a leaseReply
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		tb.Fatalf("decode lease answer: %v", err)
	}
	return a
}

func waitPrimary(tb testing.TB, g *group, want string) {
	tb.Helper()
	testwait.RetryUntil(tb, 5*time.Second, func() error {
		if got := g.primary(); got != want {
			return fmt.Errorf("primary %q, want %q", got, want)
		}
		return nil
	})
}

// TestVoteRules: the rules a store node applies to a vote, checked on a
// replica left without a primary (it cannot win alone: its group counts the
// stopped primary).
func TestVoteRules(t *testing.T) {
	g := newGroup(t, true, nil)
	g.start("p", server.RolePrimary)
	waitPrimary(t, g, "p")
	r := g.start("r", server.RoleReplica)
	waitVoters(t, g.server("p"), 2)
	c := g.client()
	for i := range 5 {
		mustTxn(t, c, store.Put("b", fmt.Sprint(i), []byte("x")))
	}
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if r.DB().LSN() != g.server("p").DB().LSN() {
			return errors.New("r behind")
		}
		return nil
	})
	// While the primary is heard, nobody gets a vote (once r has been up
	// for a lease: before, it refuses for that reason).
	time.Sleep(700 * time.Millisecond)
	st := replStatus(r)
	a := sendLease(t, r, leaseMsg{Op: "prevote", Epoch: st.Epoch + 5, Node: "x", Addr: "127.0.0.1:1", LastEpoch: st.Epoch, LastLSN: st.LSN})
	if a.Granted || !strings.Contains(a.Reason, "heard") {
		t.Fatalf("pre-vote while the primary is heard = %+v, want refused as heard", a)
	}
	g.stop("p")
	time.Sleep(700 * time.Millisecond) // a lease (600ms) without renewals
	if got := g.primary(); got != "" {
		t.Fatalf("primary = %q with one of two voters left, want none", got)
	}
	st = replStatus(r)
	epoch := st.Epoch + 5
	tests := []struct {
		name string
		msg  leaseMsg
		want bool
		why  string
	}{
		{"older log", leaseMsg{Op: "prevote", Epoch: epoch, Node: "x", LastEpoch: st.Epoch, LastLSN: st.LSN - 1}, false, "behind"},
		{"older log epoch", leaseMsg{Op: "vote", Epoch: epoch, Node: "x", LastEpoch: st.Epoch - 1, LastLSN: st.LSN + 10}, false, "behind"},
		{"stale epoch", leaseMsg{Op: "vote", Epoch: 1, Node: "x", LastEpoch: st.Epoch, LastLSN: st.LSN}, false, "not newer"},
		{"pre-vote binds nothing", leaseMsg{Op: "prevote", Epoch: epoch, Node: "x", LastEpoch: st.Epoch, LastLSN: st.LSN}, true, ""},
		{"vote", leaseMsg{Op: "vote", Epoch: epoch, Node: "y", LastEpoch: st.Epoch, LastLSN: st.LSN}, true, ""},
		{"same vote again", leaseMsg{Op: "vote", Epoch: epoch, Node: "y", LastEpoch: st.Epoch, LastLSN: st.LSN}, true, ""},
		{"second candidate, same epoch", leaseMsg{Op: "vote", Epoch: epoch, Node: "z", LastEpoch: st.Epoch, LastLSN: st.LSN + 1}, false, "not newer"},
	}
	for _, tt := range tests {
		tt.msg.Addr = "127.0.0.1:1"
		a := sendLease(t, r, tt.msg)
		if a.Granted != tt.want || !strings.Contains(a.Reason, tt.why) {
			t.Errorf("%s: answer %+v, want granted=%v (reason with %q)", tt.name, a, tt.want, tt.why)
		}
	}
	// The vote survives a restart: z still cannot have epoch `epoch`.
	g.stop("r")
	r = g.start("r", server.RoleReplica)
	a = sendLease(t, r, leaseMsg{Op: "vote", Epoch: epoch + 1, Node: "z", Addr: "127.0.0.1:1", LastEpoch: st.Epoch, LastLSN: st.LSN})
	if a.Granted || !strings.Contains(a.Reason, "started") {
		t.Fatalf("vote right after a restart = %+v, want refused (just started)", a)
	}
	time.Sleep(700 * time.Millisecond)
	a = sendLease(t, r, leaseMsg{Op: "vote", Epoch: epoch, Node: "z", Addr: "127.0.0.1:1", LastEpoch: st.Epoch, LastLSN: st.LSN})
	if a.Granted {
		t.Fatalf("vote for z at epoch %d after the restart = %+v, want refused: y has it", epoch, a)
	}
}

// TestNoSecondFailover: after a failover, the old primary comes back and
// follows; the new primary keeps its epoch (finding 1 and 2 of issue 14:
// the new primary lost the lease it had just won, and a returning node
// caused a second failover).
func TestNoSecondFailover(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) { c.Sync = 1 })
	g.start("p", server.RolePrimary)
	waitPrimary(t, g, "p")
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	waitVoters(t, g.server("p"), 3)
	c := g.client()
	mustTxn(t, c, store.Put("b", "k", []byte("1")))
	g.stop("p")
	var np string
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if np = g.primary(); np == "" {
			return errors.New("no new primary")
		}
		return nil
	})
	epoch := g.server(np).DB().Epoch()
	mustTxn(t, c, store.Put("b", "k", []byte("2")))
	old := g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 5*time.Second, func() error {
		if st := replStatus(old); st.Role != server.RoleReplica || st.Primary != np || st.LSN != g.server(np).DB().LSN() {
			return fmt.Errorf("old primary: role %s, follows %q at LSN %d", st.Role, st.Primary, st.LSN)
		}
		return nil
	})
	// Several leases later, the same node is primary at the same epoch, and
	// writes kept going.
	for i := range 20 {
		mustTxn(t, c, store.Put("b", "k", []byte(fmt.Sprint(i))))
		time.Sleep(100 * time.Millisecond)
	}
	if got := g.primary(); got != np {
		t.Fatalf("primary = %q after the old one returned, want %q", got, np)
	}
	if got := g.server(np).DB().Epoch(); got != epoch {
		t.Fatalf("epoch = %d after the old primary returned, want %d (a second failover)", got, epoch)
	}
}

// TestStopHandsOver: a primary that is stopped on purpose hands over to a
// replica that has everything, which takes over in an election round, not
// after a lease; nothing acknowledged is lost.
func TestStopHandsOver(t *testing.T) {
	g := newGroup(t, true, func(c *server.Config) {
		c.Sync = 1
		c.HandOverOnClose = true
		c.LeaseTTL = 3 * time.Second // a lease far longer than a hand-over
	})
	g.start("p", server.RolePrimary)
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if g.primary() != "p" {
			return errors.New("p not primary yet")
		}
		return nil
	})
	g.start("r1", server.RoleReplica)
	g.start("r2", server.RoleReplica)
	waitVoters(t, g.server("p"), 3)
	c := g.client()
	var acked []string
	for i := range 50 {
		k := fmt.Sprint(i)
		mustTxn(t, c, store.Put("b", k, []byte(k)))
		acked = append(acked, k)
	}
	epoch := g.server("p").DB().Epoch()
	stopped := time.Now()
	g.stop("p")
	np := g.primary()
	if np == "" {
		t.Fatalf("no primary right after the old one stopped, want a hand-over")
	}
	k := "after"
	mustTxn(t, c, store.Put("b", k, []byte(k)))
	acked = append(acked, k)
	t.Logf("stop of the primary: %s primary at once, stop and first write took %v (lease 3s)", np, time.Since(stopped).Round(time.Millisecond))
	if got := g.server(np).DB().Epoch(); got <= epoch {
		t.Fatalf("new primary's epoch %d, want > %d", got, epoch)
	}
	for _, k := range acked {
		if v, err := g.server(np).DB().Get(t.Context(), "b", k); err != nil || string(v) != k {
			t.Fatalf("acknowledged %s: Get = %q, %v on the new primary", k, v, err)
		}
	}
}
