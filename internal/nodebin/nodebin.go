// Package nodebin builds the node binary (cmd/node) for the tests that run
// it as a process: internal/e2e and pkg/launch. Each test binary builds it
// once, on the first Build, and every test of that binary runs the same
// file. The build is instrumented with -race when the test binary is, so
// that a race in the node fails the end-to-end tests too.
//
// The binary is written to a fixed place per checkout and race mode under
// the user's cache directory, replaced atomically by each build. So no
// TestMain is needed to remove it, nothing piles up, and a test binary
// whose neighbour has just built the same sources gets its build from the
// go command's cache in about a second.
package nodebin

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The one build of this test binary: a test binary is one process, and its
// tests share what Build made.
var (
	once  sync.Once
	built string
	err   error
)

// Build returns the path of a node binary built from this checkout's
// sources, building it on the first call. A failed build fails tb, and
// every later Build of the same test binary with it.
func Build(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { built, err = build() })
	if err != nil {
		tb.Fatalf("nodebin: %v", err)
	}
	return built
}

func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	mode := "plain"
	args := []string{"build"}
	if raceEnabled {
		mode = "race"
		args = append(args, "-race")
	}
	// One place per checkout: two worktrees of the module at different
	// commits must not share a binary.
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(cache, "scalestack-nodebin", fmt.Sprintf("%x-%s", sum[:4], mode))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make %s: %w", dir, err)
	}
	// Build beside the final name and rename: another test binary may be
	// running the previous build of the same sources at this moment.
	tmp := filepath.Join(dir, fmt.Sprintf("node.%d.tmp", os.Getpid()))
	cmd := exec.Command("go", append(args, "-o", tmp, "./cmd/node")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	path := filepath.Join(dir, "node")
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("install node binary: %w", err)
	}
	return path, nil
}

// moduleRoot finds the directory of go.mod above the working directory,
// which is the package's own directory in a test.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}
