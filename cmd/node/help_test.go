package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// Every -h and --help prints the command's usage and exits 0, the
// convention; a mistake in how a command is called still exits 2.
func TestHelpExitsZero(t *testing.T) {
	for _, c := range commands() {
		for _, h := range []string{"-h", "--help"} {
			var stdout, stderr bytes.Buffer
			err := dispatch([]string{c.name, h}, &stdout, &stderr)
			if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
				t.Errorf("node %s %s = %v (exit %d), want flag.ErrHelp and exit 0", c.name, h, err, exitCode(err))
			}
			if !strings.Contains(stderr.String(), "Usage:") {
				t.Errorf("node %s %s printed %q, want its usage", c.name, h, stderr.String())
			}
		}
	}
	for _, args := range [][]string{{"help", "jobs"}, {"jobs", "stats", "-h"}} {
		var stdout, stderr bytes.Buffer
		if err := dispatch(args, &stdout, &stderr); exitCode(err) != 0 {
			t.Errorf("node %s = %v (exit %d), want exit 0", strings.Join(args, " "), err, exitCode(err))
		}
	}
	var stdout, stderr bytes.Buffer
	err := dispatch([]string{"jobs", "--bogus"}, &stdout, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "bogus") || strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("node jobs --bogus = %v (exit %d), stderr %q; want exit 2 naming the flag, without the whole usage", err, exitCode(err), stderr.String())
	}
}

// up refuses a role node run does not know, and a second primary, before
// it plans or starts anything.
func TestUpScaleRefusesUnknownRoles(t *testing.T) {
	for args, want := range map[string]string{
		"bogus=1":   `--scale bogus: "bogus" is not a role: roles are primary, replica`,
		"primary=2": "a stack has one primary; --scale replica=1 adds store nodes that follow it",
	} {
		var stdout, stderr bytes.Buffer
		err := dispatch([]string{"up", "--stage", "2", "--dir", t.TempDir(), "--scale", args}, &stdout, &stderr)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), want) {
			t.Errorf("up --scale %s = %v (exit %d), want exit 2 and %q", args, err, exitCode(err), want)
		}
	}
}
