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
	if got, want := strings.Join(primaryLines(procs), "\n"), "replica-1 is primary (epoch 3)"; got != want {
		t.Errorf("primaryLines = %q, want %q", got, want)
	}
	if got := primaryLines(procs[:1]); len(got) != 1 || !strings.HasPrefix(got[0], "no store node is primary") {
		t.Errorf("primaryLines with the primary dead = %q, want no primary", got)
	}
}

// At stage 10 `node ps` names each store group's primary, one line per
// group, and a group without one says which service's writes wait.
func TestPSLiveRolePerGroup(t *testing.T) {
	store := func(name, group string, state string, r *launch.StoreRole) launch.Process {
		role := "replica"
		if strings.HasSuffix(name, "-1") {
			role = "primary"
		}
		return launch.Process{Node: launch.Node{Name: name, Roles: []string{role}, Group: group}, State: state, Store: r}
	}
	procs := []launch.Process{
		store("users-db-1", "users", launch.StateRunning, &launch.StoreRole{Group: "users", Role: "primary", Epoch: 1}),
		store("users-db-2", "users", launch.StateRunning, &launch.StoreRole{Group: "users", Role: "replica", Epoch: 1, Primary: "users-db-1"}),
		store("content-db-1", "content", launch.StateDead, nil),
		store("content-db-2", "content", launch.StateRunning, &launch.StoreRole{Group: "content", Role: "primary", Epoch: 2}),
		store("search-db-1", "search", launch.StateDead, nil),
		store("search-db-2", "search", launch.StateRunning, &launch.StoreRole{Group: "search", Role: "replica", Epoch: 1}),
		{Node: launch.Node{Name: "content-1", Roles: []string{"service"}, Group: "content", Service: "content"}, State: launch.StateRunning},
	}
	want := []string{
		"users-db-1 is primary of users (epoch 1)",
		"content-db-2 is primary of content (epoch 2)",
		"no store node of the search group is primary now (a failover in progress, or the group is down): search writes wait",
	}
	if got := primaryLines(procs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("primaryLines =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got, want := liveRole(procs[1]), "replica of users-db-1 in users (epoch 1)"; got != want {
		t.Errorf("liveRole(users-db-2) = %q, want %q", got, want)
	}
}
