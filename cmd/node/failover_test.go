package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/node"
)

// After a failover `node status` shows the store roles as they are now,
// and a dead member neither "up" nor as a primary.
func TestPrintStatusAfterFailover(t *testing.T) {
	st := node.Status{Name: "app-1", Roles: []string{"app"}, Ready: true, Members: []node.MemberStatus{
		{Name: "db-1", Roles: []string{"primary"}, Status: "dead", LastState: "up", Addrs: map[string]string{"store": "127.0.0.2:7070"}},
		{Name: "replica-1", Roles: []string{"replica"}, Status: "alive", State: "up", Addrs: map[string]string{"store": "127.0.0.3:7070"}},
		{Name: "replica-2", Roles: []string{"replica"}, Status: "alive", State: "up", Addrs: map[string]string{"store": "127.0.0.4:7070"}},
		{Name: "app-1", Roles: []string{"app"}, Status: "alive", State: "up"},
	}}
	var out bytes.Buffer
	printStatus(&out, st, map[string]string{"replica-1": "primary (epoch 3)"})
	for _, want := range []string{
		`(?m)^db-1\s+primary\s+dead\s+- \(last: up\)\s+-\s`,
		`(?m)^replica-1\s+replica\s+alive\s+up\s+primary \(epoch 3\)\s`,
		`(?m)^replica-2\s+replica\s+alive\s+up\s+\? \(no answer\)\s`,
		`(?m)^app-1\s+app\s+alive\s+up\s+-\s`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("status output does not match %s:\n%s", want, out.String())
		}
	}
}

// `node ps` names the live primary and never shows a dead node's role as live.
func TestPSLiveRole(t *testing.T) {
	primary := &launch.StoreRole{Role: "primary", Epoch: 3}
	procs := []launch.Process{
		{Node: launch.Node{Name: "db-1", Roles: []string{"primary"}}, State: launch.StateDead},
		{Node: launch.Node{Name: "replica-1", Roles: []string{"replica"}}, State: launch.StateRunning, Store: primary},
		{Node: launch.Node{Name: "replica-2", Roles: []string{"replica"}}, State: launch.StateRunning,
			Store: &launch.StoreRole{Role: "replica", Epoch: 3, Primary: "replica-1"}},
		{Node: launch.Node{Name: "replica-3", Roles: []string{"replica"}}, State: launch.StatePaused},
		{Node: launch.Node{Name: "app-1", Roles: []string{"app"}}, State: launch.StateRunning},
	}
	want := []string{"-", "primary (epoch 3)", "replica of replica-1 (epoch 3)", "? (paused)", "-"}
	for i, p := range procs {
		if got := liveRole(p); got != want[i] {
			t.Errorf("liveRole(%s) = %q, want %q", p.Name, got, want[i])
		}
	}
	if got, want := primaryLine(procs), "replica-1 is primary (epoch 3)"; got != want {
		t.Errorf("primaryLine = %q, want %q", got, want)
	}
	if got := primaryLine(procs[:1]); !strings.HasPrefix(got, "no store node is primary") {
		t.Errorf("primaryLine with the primary dead = %q, want no primary", got)
	}
}
