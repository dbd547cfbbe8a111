//go:build linux

package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	ossignal "os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The deploy tests run the launcher on fake nodes: this test binary, run
// again with fakeNodeEnv set, plays `node run` (TestMain). A fake node
// serves /status on its admin address, ready unless DIR/broken-NAME
// exists; an app lists as alive and up in membership every node that
// cluster.json says is running and ready. On SIGTERM it drains for a
// moment and exits. Each writes what it does to DIR/journal, so that the
// test reads the order of the stops and starts of the processes
// themselves.
const fakeNodeEnv = "LAUNCH_TEST_FAKE_NODE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeNodeEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "run" {
		os.Exit(fakeNode(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func fakeNode(args []string) int {
	arg := func(name, def string) string {
		if i := slices.Index(args, "--"+name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return def
	}
	name, roles := arg("name", ""), arg("roles", "")
	journal := func(what string) {
		f, err := os.OpenFile("journal", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %s\n", what, name)
			f.Close()
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(arg("addr", "127.0.0.1"), arg("admin-port", "9090")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		_, err := os.Stat("broken-" + name)
		st := nodeStatus{Name: name, Ready: err != nil}
		if strings.Contains(roles, "app") {
			if s, err := LoadState("."); err == nil {
				for _, n := range s.Nodes {
					if n.Running && !n.ReadyAt.IsZero() {
						st.Members = append(st.Members, memberView{Name: n.Name, Status: "alive", State: "up"})
					}
				}
			}
		}
		serveJSON(w, st)
	})
	go http.Serve(ln, mux)
	journal("start")
	term := make(chan os.Signal, 1)
	ossignal.Notify(term, syscall.SIGTERM)
	<-term
	journal("drain")
	time.Sleep(200 * time.Millisecond) // the calls in flight
	journal("exit")
	return 0
}

func serveJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// startFakeStack opens a launcher on fake nodes: app-1 and the service
// instances given (service name → count), each service in its own group.
func startFakeStack(t *testing.T, base string, services map[string]int) *Launcher {
	t.Helper()
	t.Setenv(fakeNodeEnv, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	st := Stage{Number: 10, Title: "fake services", Open: Endpoint{Prefix: "app", Port: "app"},
		Nodes: []NodeSpec{{Prefix: "app", Roles: []string{"app"}, Count: 1}}}
	for _, svc := range Services() {
		if n := services[svc]; n > 0 {
			st.Nodes = append(st.Nodes, NodeSpec{Prefix: svc, Roles: []string{"service"}, Count: n, Service: svc, Group: svc})
		}
	}
	cfg := DefaultConfig()
	cfg.Stage, cfg.Dir, cfg.Binary, cfg.BaseAddr = st, t.TempDir(), exe, base
	cfg.Roles = []string{"app", "service"}
	cfg.ReadyTimeout, cfg.StopTimeout = 5*time.Second, 5*time.Second
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.Open(); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// journalSince returns the fake nodes' journal lines after the first skip.
func journalSince(t *testing.T, l *Launcher, skip int) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.cfg.Dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[min(skip, len(lines)):]
}

// A deploy restarts a service's instances one at a time, each stopped
// (drained) and started again before the next is stopped, and touches no
// other service.
func TestDeployRestartsOneAtATime(t *testing.T) {
	l := startFakeStack(t, "127.0.77.2", map[string]int{"content": 2, "search": 1})
	before := len(journalSince(t, l, 0))
	var phases []string
	d, err := l.Deploy(context.Background(), "content", func(s DeployStep) { phases = append(phases, s.Phase+" "+s.Node) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"drain content-1", "exit content-1", "start content-1", "drain content-2", "exit content-2", "start content-2"}
	if got := journalSince(t, l, before); !slices.Equal(got, want) {
		t.Errorf("the processes did\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	wantPhases := []string{"stopping content-1", "stopped content-1", "ready content-1", "stopping content-2", "stopped content-2", "ready content-2"}
	if !slices.Equal(phases, wantPhases) {
		t.Errorf("progress = %v, want %v", phases, wantPhases)
	}
	if !slices.Equal(d.Restarted, []string{"content-1", "content-2"}) || d.Surge != "" {
		t.Errorf("Deployed = %+v, want content-1 and content-2 restarted, no surge", d)
	}
	for _, name := range []string{"content-1", "content-2"} {
		if n := l.node(name); !n.Running || n.Starts != 2 || n.ReadyAt.IsZero() {
			t.Errorf("%s after the deploy: running %v, starts %d, ready at %v; want running from its second start, ready", name, n.Running, n.Starts, n.ReadyAt)
		}
	}

	for _, tc := range []struct{ service, want string }{
		{"billing", `no service "billing" in the stack: services are content, search`},
		{"", `no service "" in the stack`},
	} {
		if _, err := l.Deploy(context.Background(), tc.service, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Deploy(%q) = %v, want an error containing %q", tc.service, err, tc.want)
		}
	}
}

// A service with one running instance keeps serving through its deploy: a
// second instance is added first and removed once the first is back.
func TestDeployOneInstanceSurges(t *testing.T) {
	l := startFakeStack(t, "127.0.78.2", map[string]int{"search": 1})
	before := len(journalSince(t, l, 0))
	d, err := l.Deploy(context.Background(), "search", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start search-2", "drain search-1", "exit search-1", "start search-1", "drain search-2", "exit search-2"}
	if got := journalSince(t, l, before); !slices.Equal(got, want) {
		t.Errorf("the processes did\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if d.Surge != "search-2" || !slices.Equal(d.Restarted, []string{"search-1"}) {
		t.Errorf("Deployed = %+v, want search-1 restarted with search-2 as the surge", d)
	}
	if st := l.State(); slices.ContainsFunc(st.Nodes, func(n Node) bool { return n.Name == "search-2" }) {
		t.Error("search-2, added for the deploy, is still in the stack")
	}
}

// An instance that does not come back ready stops the deploy there, with
// an error that names it and the instances not restarted.
func TestDeployStopsAtAnInstanceThatIsNotReady(t *testing.T) {
	l := startFakeStack(t, "127.0.79.2", map[string]int{"payments": 2})
	before := len(journalSince(t, l, 0))
	if err := os.WriteFile(filepath.Join(l.cfg.Dir, "broken-payments-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := l.Deploy(context.Background(), "payments", nil)
	if err == nil || !strings.Contains(err.Error(), "deploy of payments stopped at payments-1: it did not come back ready") ||
		!strings.Contains(err.Error(), "not restarted: payments-2") {
		t.Fatalf("Deploy = %v, want it stopped at payments-1, naming payments-2 as not restarted", err)
	}
	if got := journalSince(t, l, before); slices.Contains(got, "drain payments-2") {
		t.Errorf("payments-2 was stopped after payments-1 failed: %v", got)
	}
	events, _ := ReadEvents(l.cfg.Dir)
	if !slices.ContainsFunc(events, func(e Event) bool { return e.Kind == EventDeploy && strings.HasPrefix(e.Detail, "deploy failed") }) {
		t.Errorf("events %+v lack the deploy's failure", events)
	}
}

// Deploy refuses a stage that runs no services.
func TestDeployNeedsServices(t *testing.T) {
	l := &Launcher{st: State{Spec: mustLookup(t, 9), Nodes: []Node{{Name: "app-1", Roles: []string{"app"}}}}}
	if _, err := l.Deploy(context.Background(), "content", nil); err == nil || !strings.Contains(err.Error(), "runs no services") {
		t.Errorf("Deploy on stage 9 = %v, want: runs no services", err)
	}
}

func mustLookup(t *testing.T, n int) Stage {
	t.Helper()
	s, err := LookupStage(n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
