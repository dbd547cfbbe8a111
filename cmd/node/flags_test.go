package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/node"
)

// docs/flags.md is rendered from the settings table; a setting added,
// renamed or reworded without regenerating it fails here.
func TestFlagsDoc(t *testing.T) {
	var want bytes.Buffer
	writeFlags(&want, true)
	got, err := os.ReadFile("../../docs/flags.md")
	if err != nil {
		t.Fatalf("read docs/flags.md: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("docs/flags.md is stale: regenerate it with\n\tgo run ./cmd/node flags -markdown > docs/flags.md")
	}
}

// A bad value is a usage error (exit status 2) naming the flag and its
// environment variable, whether it came from the command line or the
// environment; a former name works, with a warning.
func TestRunFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"validate", []string{"run", "--roles", "lb", "--lb-backends", "127.0.0.1:1", "--lb-retries", "-1"}, nil,
			"--lb-retries (NODE_LB_RETRIES): -1 is negative"},
		{"parse", []string{"run", "--roles", "app", "--sessions", "disk"}, nil,
			`--sessions (NODE_SESSIONS): "disk": want memory or shared`},
		{"environment", []string{"run", "--roles", "lb"}, map[string]string{"NODE_LB_POLICY": "random"},
			`--lb-policy (NODE_LB_POLICY): "random": want round-robin, weighted or least-conn`},
		{"former name", []string{"run", "--roles", "lb", "--backends", "127.0.0.1:1", "--health-rise", "0"}, nil,
			"--lb-health-rise (NODE_LB_HEALTH_RISE): 0 must be at least 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			err := dispatch(tt.args, &stdout, &stderr)
			if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("node %s = %v (exit %d), want exit 2 and %q", strings.Join(tt.args, " "), err, exitCode(err), tt.want)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	err := dispatch([]string{"run", "--roles", "lb", "--backends", "127.0.0.1:1", "--lb-retries", "-1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "warning: --backends is deprecated: use --lb-backends\n") {
		t.Errorf("--backends: stderr %q, want a warning naming --lb-backends", stderr.String())
	}
}

// `node run -h` lists every flag under its role, the levers together.
func TestRunHelpGroupsByRole(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := dispatch([]string{"run", "-h"}, &stdout, &stderr); exitCode(err) != 0 {
		t.Fatalf("run -h = %v", err)
	}
	help := stderr.String()
	last := -1
	for _, heading := range []string{"Node (every node):", "The levers:", "Edge (--roles edge):", "Load balancer (--roles lb):",
		"App (--roles app):", "Worker (--roles worker):", "Cache (--roles cache):", "Store (--roles primary or replica):", "Gossip (every node):", "Admin port (every node):"} {
		i := strings.Index(help, "\n"+heading+"\n")
		if i < last {
			t.Errorf("help: %q missing or out of order", heading)
		}
		last = i
	}
	levers := help[strings.Index(help, "The levers:"):strings.Index(help, "Edge (--roles edge):")]
	for _, l := range []string{"--sticky ", "--reads ", "--cache ", "--sessions ", "--jobs "} {
		if !strings.Contains(levers, l) {
			t.Errorf("the levers lack %s", l)
		}
	}
	if !strings.Contains(levers, "inline (inside the request) or queue") {
		t.Errorf("--jobs does not state both values:\n%s", levers)
	}
}

// No script, doc or program of the repository passes a former flag name
// to node run: each would print a warning on every start, and teach the
// old name. Only the tests of the former names themselves use them.
func TestNoFormerFlagNameInUse(t *testing.T) {
	cfg := node.DefaultConfig()
	var names []string
	for _, s := range cfg.Settings().Settings() {
		for _, old := range s.Deprecated {
			names = append(names, regexp.QuoteMeta(old))
		}
	}
	former := regexp.MustCompile(`(^|[^A-Za-z0-9-])--(` + strings.Join(names, "|") + `)([^A-Za-z0-9-]|$)`)
	exempt := map[string]bool{ // they test the former names
		"cmd/node/flags_test.go": true, "pkg/node/settings_test.go": true, "docs/flags.md": true,
	}
	root := "../.."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "data" {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if (ext != ".go" && ext != ".sh" && ext != ".md") || exempt[filepath.ToSlash(rel)] || strings.HasPrefix(filepath.ToSlash(rel), "pkg/settings/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "--") && former.MatchString(line) {
				t.Errorf("%s:%d uses a former flag name: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
