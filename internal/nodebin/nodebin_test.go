package nodebin_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/nodebin"
)

// Build gives a binary that runs, and the same one on every call.
func TestBuildOnce(t *testing.T) {
	bin := nodebin.Build(t)
	out, err := exec.Command(bin, "keygen").Output()
	if err != nil {
		t.Fatalf("%s keygen: %v", bin, err)
	}
	if strings.TrimSpace(string(out)) == "" {
		t.Fatalf("%s keygen printed nothing, want a key", bin)
	}
	if again := nodebin.Build(t); again != bin {
		t.Fatalf("second Build = %s, want the first build %s", again, bin)
	}
}
