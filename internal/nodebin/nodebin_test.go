package nodebin_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/nodebin"
)

// Build and BuildNoRace give a binary that runs, and the same one on
// every call.
func TestBuildOnce(t *testing.T) {
	for _, build := range []func(testing.TB) string{nodebin.Build, nodebin.BuildNoRace} {
		bin := build(t)
		out, err := exec.Command(bin, "keygen").Output()
		if err != nil {
			t.Fatalf("%s keygen: %v", bin, err)
		}
		if strings.TrimSpace(string(out)) == "" {
			t.Fatalf("%s keygen printed nothing, want a key", bin)
		}
		if again := build(t); again != bin {
			t.Fatalf("second build = %s, want the first build %s", again, bin)
		}
	}
}
