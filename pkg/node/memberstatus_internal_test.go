package node

import (
	"testing"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// A dead member's metadata is what it announced before it died: /status
// must not show a dead node as "up", only as its last, stale state.
func TestMemberStatusOfDeadMember(t *testing.T) {
	for _, tc := range []struct {
		status          cluster.Status
		state           string
		wantState, last string
	}{
		{cluster.StatusAlive, cluster.StateUp, "up", ""},
		{cluster.StatusAlive, cluster.StateDraining, "draining", ""},
		{cluster.StatusDead, cluster.StateUp, "", "up"},
		{cluster.StatusLeft, cluster.StateDraining, "", "draining"},
	} {
		m := cluster.Member{Meta: cluster.Meta{Name: "db-1", Roles: []string{"primary"}, State: tc.state}, Status: tc.status}
		got := memberStatus(m)
		if got.State != tc.wantState || got.LastState != tc.last || got.Status != string(tc.status) || got.Name != "db-1" {
			t.Errorf("memberStatus(%s, %s) = status %q state %q last_state %q, want state %q last_state %q",
				tc.status, tc.state, got.Status, got.State, got.LastState, tc.wantState, tc.last)
		}
	}
}
