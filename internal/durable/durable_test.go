package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAndCopy(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "b.json")
	if err := CopyFile(p, q, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{p: "two", q: "two"} {
		b, err := os.ReadFile(path)
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
	}
	if fi, err := os.Stat(q); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("copy's mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("a temporary file is left: %v", err)
	}
	// A source that is not there leaves the target as it was.
	if err := CopyFile(filepath.Join(dir, "missing"), q, 0o600); err == nil {
		t.Error("copying a missing file succeeded")
	}
	if b, _ := os.ReadFile(q); string(b) != "two" {
		t.Errorf("failed copy changed the target to %q", b)
	}
}
