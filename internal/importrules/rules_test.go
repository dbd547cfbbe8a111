package importrules_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/importrules"
)

// TestModuleFollowsRules checks Rules against the module as it is.
func TestModuleFollowsRules(t *testing.T) {
	pkgs := listModule(t)
	violations, problems := importrules.Check(importrules.Rules, pkgs)
	for _, p := range problems {
		t.Error(p)
	}
	for _, v := range violations {
		t.Error(v)
	}
}

// listModule runs `go list -deps -json` over the module: its packages and
// everything they depend on, tests excluded.
func listModule(tb testing.TB) []importrules.Package {
	tb.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		tb.Fatalf("the go command is needed to list the packages: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-deps", "-json=ImportPath,Imports,Deps", "github.com/scalestack/scalestack/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []importrules.Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p importrules.Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			tb.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 50 {
		tb.Fatalf("go list listed %d packages, fewer than the module has", len(pkgs))
	}
	return pkgs
}

const mod = "github.com/scalestack/scalestack/"

// graph is a synthetic module: a domain package that reaches bbolt through
// the engine, and the engine itself.
func graph() []importrules.Package {
	return []importrules.Package{
		{ImportPath: mod + "pkg/app/posts", Imports: []string{mod + "pkg/store", mod + "pkg/store/boltdb"},
			Deps: []string{mod + "pkg/store", mod + "pkg/store/boltdb", "go.etcd.io/bbolt", "go.etcd.io/bbolt/errors"}},
		{ImportPath: mod + "pkg/store"},
		{ImportPath: mod + "pkg/store/boltdb", Imports: []string{mod + "pkg/store", "go.etcd.io/bbolt"},
			Deps: []string{mod + "pkg/store", "go.etcd.io/bbolt", "go.etcd.io/bbolt/errors"}},
		{ImportPath: "go.etcd.io/bbolt", Imports: []string{"go.etcd.io/bbolt/errors"}, Deps: []string{"go.etcd.io/bbolt/errors"}},
		{ImportPath: "go.etcd.io/bbolt/errors"},
	}
}

// TestCheckFindsViolation feeds Check a domain package that depends on the
// engine: the checker itself must be able to fail.
func TestCheckFindsViolation(t *testing.T) {
	rules := []importrules.Rule{
		{Packages: []string{mod + "pkg/app/..."}, Forbid: []string{"go.etcd.io/bbolt/...", mod + "pkg/store/boltdb"}, Reason: "domain"},
		{Packages: []string{mod + "..."}, Except: []string{mod + "pkg/store/boltdb"}, Forbid: []string{"go.etcd.io/bbolt/..."}, Direct: true, Reason: "one adapter"},
	}
	violations, problems := importrules.Check(rules, graph())
	if len(problems) != 0 {
		t.Fatalf("problems = %q, want none", problems)
	}
	var got []string
	for _, v := range violations {
		got = append(got, v.Package+" -> "+v.Dep)
	}
	// The direct rule holds: posts imports bbolt only through the engine.
	want := []string{
		mod + "pkg/app/posts -> " + mod + "pkg/store/boltdb",
		mod + "pkg/app/posts -> go.etcd.io/bbolt",
		mod + "pkg/app/posts -> go.etcd.io/bbolt/errors",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("violations = %q, want %q", got, want)
	}
	chain := strings.Join(violations[1].Chain, " -> ")
	if want := mod + "pkg/app/posts -> " + mod + "pkg/store/boltdb -> go.etcd.io/bbolt"; chain != want {
		t.Errorf("chain = %q, want %q", chain, want)
	}
	if msg := violations[1].String(); !strings.Contains(msg, "domain") {
		t.Errorf("String() = %q, want the rule's reason in it", msg)
	}
}

// TestCheckDirect: a package that imports bbolt itself breaks the direct
// rule; the adapter named in Except does not.
func TestCheckDirect(t *testing.T) {
	pkgs := append(graph(), importrules.Package{ImportPath: mod + "pkg/store/server", Imports: []string{"go.etcd.io/bbolt"}, Deps: []string{"go.etcd.io/bbolt", "go.etcd.io/bbolt/errors"}})
	rules := []importrules.Rule{{Packages: []string{mod + "..."}, Except: []string{mod + "pkg/store/boltdb"}, Forbid: []string{"go.etcd.io/bbolt/..."}, Direct: true}}
	violations, _ := importrules.Check(rules, pkgs)
	if len(violations) != 1 || violations[0].Package != mod+"pkg/store/server" {
		t.Fatalf("violations = %v, want pkg/store/server's import of bbolt only", violations)
	}
}

// TestCheckReportsVacuousRules: a pattern that matches nothing (a renamed
// package, a typo) is reported rather than passing silently.
func TestCheckReportsVacuousRules(t *testing.T) {
	rules := []importrules.Rule{{Packages: []string{mod + "pkg/gone/..."}, Forbid: []string{"go.etcd.io/bbolt", "go.etcd.io/bbolt-typo"}}}
	_, problems := importrules.Check(rules, graph())
	if len(problems) != 2 || !strings.Contains(problems[0], "pkg/gone/...") || !strings.Contains(problems[1], "bbolt-typo") {
		t.Fatalf("problems = %q, want the Packages pattern and the Forbid typo", problems)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/...", "a/b", true},
		{"a/b/...", "a/b/c/d", true},
		{"a/b/...", "a/bc", false},
		{"a/b", "a/bc", false},
	} {
		if got := importrules.Match(tc.pattern, tc.path); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.path, got, tc.want)
		}
	}
}
