package launch

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/scalestack/scalestack/internal/durable"
)

// The stack's own binary. Every node of a stack runs DIR/bin/node, a copy
// of the program that started it, and the commands that `node up` prints
// name that file. Under `go run` the program lives in a temporary
// directory that the go command removes when node up exits, and on a
// machine with Node.js a bare `node ps` runs Node.js: DIR/bin/node is a
// path that works from another terminal, for as long as the stack's
// directory exists.

// BinPath returns the path of the binary of the stack in dir.
func BinPath(dir string) string { return filepath.Join(dir, "bin", "node") }

// installBinary puts a copy of the program src at DIR/bin/node and returns
// that path. It writes a temporary name beside it and renames it, so a
// node still running an earlier copy keeps its file and a reader never
// sees half a binary. A hard link costs nothing; where src is on another
// file system, it copies.
func installBinary(src, dir string) (string, error) {
	dst := BinPath(dir)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("launch: install the node binary: %w", err)
	}
	// Started as DIR/bin/node itself: renaming a link of a file over
	// another link of the same file does nothing, and would leave the
	// temporary name behind.
	if a, err := os.Stat(src); err == nil {
		if b, err := os.Stat(dst); err == nil && os.SameFile(a, b) {
			return dst, nil
		}
	}
	tmp := filepath.Join(filepath.Dir(dst), ".node-"+rand.Text())
	if err := os.Link(src, tmp); err != nil {
		if err := durable.CopyFile(src, tmp, 0o755); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("launch: install the node binary %s as %s: %w", src, dst, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("launch: install the node binary: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("launch: install the node binary: %w", err)
	}
	return dst, nil
}

// Command is how a person in the current directory runs the stack's binary:
// its path relative to the working directory when the stack's directory is
// under it (".scalestack/bin/node"), else absolute. Run from there with no
// --dir, the binary finds this stack (cmd/node). A state written before
// stacks had their own binary names the program that started them.
func (s State) Command() string {
	bin := s.Binary
	if bin == "" {
		bin = BinPath(s.Dir)
	}
	return relCommand(bin)
}

// relCommand returns path relative to the working directory when it is
// under it, else path itself. A relative path keeps a directory part
// ("./node"), so that a shell runs that file rather than one on PATH.
func relCommand(path string) string {
	wd, err := os.Getwd()
	if err != nil || !filepath.IsAbs(path) || wd == filepath.Dir(wd) {
		return path // from the root, an absolute path reads better
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	if !strings.ContainsRune(rel, filepath.Separator) {
		rel = "." + string(filepath.Separator) + rel
	}
	return rel
}

// StackDirOf returns the stack directory of a binary installed at
// DIR/bin/node, and whether exe is one: DIR holds a cluster.json.
func StackDirOf(exe string) (string, bool) {
	if filepath.Base(filepath.Dir(exe)) != "bin" {
		return "", false
	}
	dir := filepath.Dir(filepath.Dir(exe))
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		return "", false
	}
	return dir, true
}
