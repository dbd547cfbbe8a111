package launch_test

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/node"
)

func TestStageTable(t *testing.T) {
	stages := launch.Stages()
	if len(stages) < 2 {
		t.Fatalf("Stages() has %d stages, want at least stages 1 and 2", len(stages))
	}
	for i, s := range stages {
		if i > 0 && s.Number <= stages[i-1].Number {
			t.Errorf("stage %d follows stage %d: want the table in increasing order", s.Number, stages[i-1].Number)
		}
		if s.Title == "" || len(s.Nodes) == 0 {
			t.Errorf("%s: want a title and nodes", s)
		}
		names := map[string]bool{}
		openFound := false
		for _, ns := range s.Nodes {
			// Groups may share a prefix (a store group's primary and
			// replicas) when their numbers do not overlap.
			for i := range ns.Count {
				name := fmt.Sprintf("%s-%d", ns.Prefix, max(ns.First, 1)+i)
				if names[name] {
					t.Errorf("%s: two groups name a node %s", s, name)
				}
				names[name] = true
			}
			if ns.Count < 1 || len(ns.Roles) == 0 {
				t.Errorf("%s: group %q has count %d and roles %v, want at least one node with a role", s, ns.Prefix, ns.Count, ns.Roles)
			}
			if ns.Prefix == s.Open.Prefix {
				openFound = true
				if !slices.Contains(ns.Roles, s.Open.Port) {
					t.Errorf("%s: the URL to open is the %q port of %q, which runs %v", s, s.Open.Port, ns.Prefix, ns.Roles)
				}
			}
		}
		if !openFound {
			t.Errorf("%s: the URL to open names group %q, which the stage lacks", s, s.Open.Prefix)
		}
	}
	if got, want := launch.LatestStage().Number, stages[len(stages)-1].Number; got != want {
		t.Errorf("LatestStage() = %d, want the highest, %d", got, want)
	}
}

func TestStagesOneAndTwo(t *testing.T) {
	s1, err := launch.LookupStage(1)
	if err != nil {
		t.Fatal(err)
	}
	if got := s1.Nodes; len(got) != 1 || got[0].Count != 1 || !slices.Equal(got[0].Roles, []string{"app", "primary"}) {
		t.Errorf("stage 1 nodes = %+v, want one node with app,primary", got)
	}
	s2, err := launch.LookupStage(2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ns := range s2.Nodes {
		got = append(got, ns.Prefix+":"+strings.Join(ns.Roles, ","))
	}
	if want := []string{"db:primary", "app:app"}; !slices.Equal(got, want) {
		t.Errorf("stage 2 groups = %v, want %v (the store first: the app depends on it)", got, want)
	}
	if s2.Open != (launch.Endpoint{Prefix: "app", Port: "app"}) {
		t.Errorf("stage 2 opens %+v, want app-1's app port", s2.Open)
	}
}

func TestLookupStageErrorsListTheStages(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "there is no stage 0"},
		{11, "there is no stage 11"},
	} {
		_, err := launch.LookupStage(tc.n)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "1 (single server), 2 (separate database)") {
			t.Errorf("LookupStage(%d) = %v, want %q and the list of stages", tc.n, err, tc.want)
		}
	}
}

func TestParseScale(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int
		err  string
	}{
		{in: "", want: map[string]int{}},
		{in: "app=3", want: map[string]int{"app": 3}},
		{in: " app = 3 , replica=0 ", want: map[string]int{"app": 3, "replica": 0}},
		{in: "app", err: "want role=count"},
		{in: "=3", err: "want role=count"},
		{in: "app=-1", err: "from 0 to 64"},
		{in: "app=65", err: "from 0 to 64"},
		{in: "app=two", err: "from 0 to 64"},
		{in: "app=1,app=2", err: "given twice"},
		{in: "service/content=3,replica/search=1", want: map[string]int{"service/content": 3, "replica/search": 1}},
		{in: "service/content=3,service/search=2", want: map[string]int{"service/content": 3, "service/search": 2}},
		{in: "service/content=1,service/content=2", err: "given twice"},
		{in: "service/=3", err: "want role=count or role/group=count"},
		{in: "service/Content=3", err: "want role=count or role/group=count"},
		{in: "/content=3", err: "want role=count"},
	} {
		got, err := launch.ParseScale(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseScale(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("ParseScale(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestScale(t *testing.T) {
	s2, _ := launch.LookupStage(2)
	groups := func(s launch.Stage) string {
		var out []string
		for _, ns := range s.Nodes {
			out = append(out, ns.Prefix+"="+strings.Join(ns.Roles, ",")+"×"+string(rune('0'+ns.Count)))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		stage  launch.Stage
		counts map[string]int
		want   string
		err    string
	}{
		{stage: s2, counts: map[string]int{"app": 3}, want: "db=primary×1 app=app×3"},
		{stage: s2, counts: map[string]int{"cache": 1, "app": 2}, want: "db=primary×1 app=app×2 cache=cache×1"},
		{stage: s2, counts: map[string]int{"replica": 0}, want: "db=primary×1 app=app×1"},
		{stage: s2, counts: map[string]int{"app": 0}, err: "needs at least one app node"},
		{stage: s2, counts: map[string]int{"primary": 0}, want: "app=app×1"},
		{stage: mustStage(t, 1), counts: map[string]int{"app": 2}, err: "shares its nodes with primary"},
		{stage: s2, counts: map[string]int{"primary": 2}, err: "a stack has one primary; --scale replica=1 adds"},
	} {
		got, err := tc.stage.Scale(tc.counts)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s.Scale(%v) error = %v, want one containing %q", tc.stage, tc.counts, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s.Scale(%v): %v", tc.stage, tc.counts, err)
			continue
		}
		if g := groups(got); g != tc.want {
			t.Errorf("%s.Scale(%v) = %s, want %s", tc.stage, tc.counts, g, tc.want)
		}
	}
	// Stage 10 scales a service, or a store group's replicas, by name.
	s10 := mustStage(t, 10)
	count := func(s launch.Stage, prefix, role string) int {
		for _, ns := range s.Nodes {
			if ns.Prefix == prefix && slices.Equal(ns.Roles, []string{role}) {
				return ns.Count
			}
		}
		return 0
	}
	got, err := s10.Scale(map[string]int{"service/content": 3, "replica/search": 1, "app": 3})
	if err != nil {
		t.Fatal(err)
	}
	if c, r, a, u := count(got, "content", "service"), count(got, "search-db", "replica"), count(got, "app", "app"), count(got, "users", "service"); c != 3 || r != 1 || a != 3 || u != 1 {
		t.Errorf("stage 10 scaled: content %d, search replicas %d, apps %d, users %d; want 3, 1, 3, 1", c, r, a, u)
	}
	if got, _ := s10.Scale(map[string]int{"service/search": 0}); count(got, "search", "service") != 0 || count(got, "search-db", "primary") != 1 {
		t.Errorf("service/search=0 = %+v, want no search instance and its store group kept", got.Nodes)
	}
	for _, tc := range []struct {
		stage  launch.Stage
		counts map[string]int
		err    string
	}{
		{s10, map[string]int{"service": 3}, "name the service, e.g. --scale service/users=3"},
		{s10, map[string]int{"replica": 1}, "name the group, e.g. --scale replica/users=1"},
		{s10, map[string]int{"service/billing": 1}, `runs no service nodes of "billing": it runs them for users, content, search, notifications, payments`},
		{s10, map[string]int{"primary/content": 2}, "the content group has one primary (content-db-1)"},
		{s2, map[string]int{"service/content": 1}, "runs no service nodes in groups"},
	} {
		if _, err := tc.stage.Scale(tc.counts); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s.Scale(%v) error = %v, want one containing %q", tc.stage, tc.counts, err, tc.err)
		}
	}
	if got := launch.ScaleRole("service/content"); got != "service" {
		t.Errorf("ScaleRole(service/content) = %q, want service", got)
	}

	// Scaling returns a copy: the table itself never changes.
	if g := groups(mustStage(t, 2)); g != "db=primary×1 app=app×1" {
		t.Errorf("stage 2 after scaling = %s, want the table unchanged", g)
	}
}

func mustStage(t testing.TB, n int) launch.Stage {
	t.Helper()
	s, err := launch.LookupStage(n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWithRoleFlag(t *testing.T) {
	s6, err := launch.LookupStage(6)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s6.WithRoleFlag("edge=--edge-origin-latency=50ms")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range got.Nodes {
		has := slices.Contains(ns.Flags, "--edge-origin-latency=50ms")
		if want := slices.Contains(ns.Roles, "edge"); has != want {
			t.Errorf("group %s (%v) flags = %v, want the flag only on edge nodes", ns.Prefix, ns.Roles, ns.Flags)
		}
	}
	if again, _ := launch.LookupStage(6); slices.ContainsFunc(again.Nodes, func(ns launch.NodeSpec) bool {
		return slices.Contains(ns.Flags, "--edge-origin-latency=50ms")
	}) {
		t.Error("WithRoleFlag changed the stage table, want a copy")
	}
	for _, tc := range []struct{ spec, want string }{
		{"edge", "want role=--flag=value"},
		{"edge=origin-latency=50ms", "want role=--flag=value"},
		{"=--x=1", "want role=--flag=value"},
		{"edge=--", "want role=--flag=value"},
	} {
		if _, err := s6.WithRoleFlag(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithRoleFlag(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
	s1, _ := launch.LookupStage(1)
	if _, err := s1.WithRoleFlag("edge=--edge-origin-latency=50ms"); err == nil || !strings.Contains(err.Error(), "runs no edge node") {
		t.Errorf("WithRoleFlag on stage 1 = %v, want an error: no edge node", err)
	}
	got, err = s1.WithRoleFlag("app=--cache=off")
	if err != nil || !slices.Contains(got.Nodes[0].Flags, "--cache=off") {
		t.Errorf("WithRoleFlag(app) on stage 1 = %+v, %v: want the flag on the app,primary node", got.Nodes, err)
	}
}

// Every flag a stage preset gives its nodes is a current flag of `node
// run` with a value it takes: no former name (which would warn on every
// start), no typo, no value a mode refuses.
func TestStageFlagsAreCurrent(t *testing.T) {
	for _, s := range launch.Stages() {
		for _, ns := range s.Nodes {
			cfg := node.DefaultConfig()
			tbl := cfg.Settings()
			var warnings strings.Builder
			tbl.SetWarnings(&warnings)
			fs := flag.NewFlagSet("run", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			tbl.Register(fs)
			if err := tbl.Parse(fs, ns.RunFlags()); err != nil {
				t.Errorf("%s, %s nodes: flags %q: %v", s, ns.Prefix, ns.RunFlags(), err)
			}
			if warnings.Len() > 0 {
				t.Errorf("%s, %s nodes: flags %q use a former name: %s", s, ns.Prefix, ns.Flags, warnings.String())
			}
		}
	}
}
