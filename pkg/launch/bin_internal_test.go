package launch

import (
	"os"
	"path/filepath"
	"testing"
)

// The stack's binary is a copy of the program at DIR/bin/node, mode 0755,
// that outlives the program's own file (go run removes it); installing it
// again, or from DIR/bin/node itself, leaves one file and no temporary.
func TestInstallBinary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "node")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho one\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := installBinary(src, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "bin", "node"); bin != want {
		t.Fatalf("installBinary = %s, want %s", bin, want)
	}
	if err := os.Remove(src); err != nil { // as go run does when it ends
		t.Fatal(err)
	}
	fi, err := os.Stat(bin)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("DIR/bin/node after its source went: %v, %v; want mode 0755", fi, err)
	}

	// A second stack start, from another build, replaces it.
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho two\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := installBinary(src, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(bin); string(b) != "#!/bin/sh\necho two\n" {
		t.Errorf("DIR/bin/node after a second install = %q, want the new program", b)
	}
	// Started as DIR/bin/node itself.
	if got, err := installBinary(bin, dir); err != nil || got != bin {
		t.Errorf("installBinary(DIR/bin/node) = %s, %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(bin))
	if len(entries) != 1 {
		t.Errorf("DIR/bin holds %d files, want only node", len(entries))
	}
}

// The command printed for a stack is its binary's path relative to the
// working directory when under it, else absolute; a binary at DIR/bin/node
// finds its stack in DIR.
func TestCommandAndStackDir(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	for _, tt := range []struct{ dir, want string }{
		{filepath.Join(wd, ".scalestack"), filepath.Join(".scalestack", "bin", "node")},
		{filepath.Join(wd, "a", "b"), filepath.Join("a", "b", "bin", "node")},
		{"/elsewhere/stack", "/elsewhere/stack/bin/node"},
	} {
		st := State{Dir: tt.dir, Binary: BinPath(tt.dir)}
		if got := st.Command(); got != tt.want {
			t.Errorf("Command() of a stack in %s = %q, want %q", tt.dir, got, tt.want)
		}
	}
	if got, want := relCommand(filepath.Join(wd, "node")), "./node"; got != want {
		t.Errorf("relCommand(WD/node) = %q, want %q", got, want)
	}

	dir := filepath.Join(wd, ".scalestack")
	if _, ok := StackDirOf(BinPath(dir)); ok {
		t.Errorf("StackDirOf(%s) found a stack with no cluster.json", BinPath(dir))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := StackDirOf(BinPath(dir)); !ok || got != dir {
		t.Errorf("StackDirOf(%s) = %s, %v; want %s", BinPath(dir), got, ok, dir)
	}
	if _, ok := StackDirOf(filepath.Join(dir, "node")); ok {
		t.Error("StackDirOf of a binary outside bin/ found a stack")
	}
}
