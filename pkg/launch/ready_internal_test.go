package launch

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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

// rotationGaps reads each lb's and edge's /status: an app node the lb does
// not hold healthy, an lb the edge lacks as origin, is a gap; a node that
// is not ready, or an lb with --lb-backends, is left out.
func TestRotationGaps(t *testing.T) {
	statuses := map[string]string{
		"app-1":  `{"name":"app-1","ready":true}`,
		"app-2":  `{"name":"app-2","ready":true}`,
		"app-3":  `{"name":"app-3","ready":false}`,
		"lb-1":   `{"name":"lb-1","ready":true,"addrs":{"lb":"127.0.9.50:8080"},"sections":{"lb":{"backends":[{"name":"app-1","state":"healthy"},{"name":"app-2","state":"unhealthy","last_check":"503 Service Unavailable"}]}}}`,
		"lb-2":   `{"name":"lb-2","ready":true,"addrs":{"lb":"127.0.9.51:8080"},"sections":{"lb":{"backends":[]}}}`,
		"edge-1": `{"name":"edge-1","ready":true,"sections":{"edge":{"origins":["127.0.9.50:8080"]}}}`,
	}
	var nodes []Node
	for _, n := range []struct {
		name, role string
		args       []string
	}{
		{"app-1", "app", nil}, {"app-2", "app", nil}, {"app-3", "app", nil},
		{"lb-1", "lb", nil}, {"lb-2", "lb", []string{"--lb-backends=127.0.0.1:1"}}, {"edge-1", "edge", nil},
	} {
		body := statuses[n.name]
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
		t.Cleanup(srv.Close)
		nodes = append(nodes, Node{Name: n.name, Roles: []string{n.role}, Running: true, Args: n.args, Admin: strings.TrimPrefix(srv.URL, "http://")})
	}
	l := &Launcher{st: State{Nodes: nodes}}
	var got []string
	for _, g := range l.rotationGaps(t.Context(), http.DefaultClient, []string{"app-1", "app-2", "app-3", "lb-1", "lb-2", "edge-1"}) {
		got = append(got, g.String()+": "+g.reason())
	}
	want := []string{"lb-1 → app-2: lb-1 still holds app-2 unhealthy (last check: 503 Service Unavailable)"}
	if !slices.Equal(got, want) {
		t.Errorf("gaps = %q, want %q", got, want)
	}
	// Only the hops of the nodes waited for: app-1 alone has none.
	if gaps := l.rotationGaps(t.Context(), http.DefaultClient, []string{"app-1"}); len(gaps) != 0 {
		t.Errorf("gaps of app-1 = %v, want none", gaps)
	}
}

// A stack of stage 10's size is told by phase: the count of each first,
// then a line per phase once all its nodes are ready.
func TestProgressLineByPhase(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, _ := LookupStage(10)
	var nodes []Node
	var names []string
	for _, ns := range st.Nodes {
		for i := range ns.Count {
			name := fmt.Sprintf("%s-%d", ns.Prefix, ns.first()+i)
			took := 500 * time.Millisecond
			if name == "content-db-3" || name == "search-1" {
				took = 900 * time.Millisecond
			}
			nodes = append(nodes, Node{Name: name, Roles: ns.Roles, StartedAt: t0, ReadyAt: t0.Add(took)})
			names = append(names, name)
		}
	}
	l := &Launcher{st: State{Nodes: nodes}}
	pendingIn := func(phases ...string) []string {
		var out []string
		for _, n := range nodes {
			if slices.Contains(phases, phaseOf(n)) {
				out = append(out, n.Name)
			}
		}
		return out
	}
	var out bytes.Buffer
	p := newProgressLine(&out)
	p.draw(l, names, names, nil, 100*time.Millisecond)
	p.draw(l, names, pendingIn(phaseServices, phaseFront), nil, 1000*time.Millisecond)
	p.draw(l, names, pendingIn(phaseFront), nil, 2000*time.Millisecond)
	p.draw(l, names, pendingIn(phaseFront), nil, 2100*time.Millisecond) // nothing new: no line
	p.draw(l, names, nil, []rotationGap{{front: "lb-1", back: "app-2"}}, 3000*time.Millisecond)
	p.draw(l, names, nil, nil, 3500*time.Millisecond)
	want := strings.Join([]string{
		"    0.1s  starting 26 nodes: 15 store nodes, 5 service instances, 6 gateways, workers, caches, lbs, edges",
		"    1.0s  store nodes ready 15/15 (slowest content-db-3 0.9s)",
		"    2.0s  service instances ready 5/5 (slowest search-1 0.9s)",
		"    3.0s  gateways, workers, caches, lbs, edges ready 6/6 (slowest edge-1 0.5s)",
		"    3.0s  waiting for the rotation: lb-1 → app-2",
		"    3.5s  every lb and edge serves through every node",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("progress =\n%s\nwant\n%s", got, want)
	}
}
