package launch

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Off a terminal the progress is one line per change: the count, and only
// the nodes that became ready since the last line; then one line for the
// wait for the lb's rotation and one for its end.
func TestProgressLinePrintsOnlyWhatChanged(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &Launcher{st: State{Nodes: []Node{
		{Name: "db-1", StartedAt: t0, ReadyAt: t0.Add(500 * time.Millisecond)},
		{Name: "app-1", StartedAt: t0, ReadyAt: t0.Add(800 * time.Millisecond)},
		{Name: "app-2", StartedAt: t0, ReadyAt: t0.Add(900 * time.Millisecond)},
		{Name: "lb-1", StartedAt: t0, ReadyAt: t0.Add(1200 * time.Millisecond)},
	}}}
	names := []string{"db-1", "app-1", "app-2", "lb-1"}
	var out bytes.Buffer
	p := newProgressLine(&out)
	gap := []rotationGap{{front: "lb-1", back: "app-2", state: "unhealthy"}}
	p.draw(l, names, names, nil, 100*time.Millisecond)
	p.draw(l, names, names[1:], nil, 600*time.Millisecond)
	p.draw(l, names, names[1:], nil, 700*time.Millisecond) // nothing new: no line
	p.draw(l, names, names[3:], nil, 1000*time.Millisecond)
	p.draw(l, names, nil, gap, 1300*time.Millisecond)
	p.draw(l, names, nil, gap, 1400*time.Millisecond) // still waiting: no line
	p.draw(l, names, nil, nil, 2300*time.Millisecond)
	p.done()
	want := strings.Join([]string{
		"    0.1s  ready 0/4",
		"    0.6s  ready 1/4 (+db-1 0.5s)",
		"    1.0s  ready 3/4 (+app-1 0.8s, +app-2 0.9s)",
		"    1.3s  ready 4/4 (+lb-1 1.2s); waiting for the rotation: lb-1 → app-2",
		"    2.3s  ready 4/4; every lb and edge serves through every node",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("progress =\n%s\nwant\n%s", got, want)
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("x", 150)
	if got := truncate(long, 100); len([]rune(got)) != 100 || !strings.HasSuffix(got, "…") {
		t.Errorf("truncate(150 x, 100) = %q (%d runes), want 100 runes ending in …", got, len([]rune(got)))
	}
	if got := truncate("ready 3/4", 100); got != "ready 3/4" {
		t.Errorf("truncate(short) = %q, want it unchanged", got)
	}
}
