package launch_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/nodebin"
)

// The commands node up prints work as printed, from another terminal:
// they run the stack's own binary, DIR/bin/node, which finds its stack
// without --dir and outlives the program that started the stack (under
// `go run`, a temporary file).
func TestPrintedCommandsWork(t *testing.T) {
	t.Parallel()
	// node up from a copy of the binary that is gone once the stack runs,
	// as go run's is when it ends.
	prog := filepath.Join(t.TempDir(), "node")
	b, err := os.ReadFile(nodebin.BuildNoRace(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	s := startStackWith(t, prog, t.TempDir(), 1, "127.0.61.2")
	if err := os.Remove(prog); err != nil {
		t.Fatal(err)
	}

	out := s.out.String()
	i := strings.Index(out, "From another terminal")
	if i < 0 {
		t.Fatalf("node up printed no commands:\n%s", out)
	}
	bin := filepath.Join(s.dir, "bin", "node")
	var cmds []string
	for _, line := range strings.Split(out[i:], "\n")[1:] {
		line, _, _ = strings.Cut(strings.TrimSpace(line), "#")
		if !strings.HasPrefix(line, bin+" ") {
			break
		}
		cmds = append(cmds, strings.TrimSpace(line))
	}
	if len(cmds) < 4 {
		t.Fatalf("node up printed %d commands of %s, want ps, status, kill, start, load:\n%s", len(cmds), bin, out)
	}
	for _, c := range cmds {
		args := strings.Fields(strings.ReplaceAll(c, "NAME", "node-1"))
		if args[1] == "load" {
			args = append(args, "--duration", "1s", "--rate", "10")
		}
		// From another directory, with no --dir: the binary finds its stack.
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = t.TempDir()
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, got)
		}
	}
	s.interrupt()
}
