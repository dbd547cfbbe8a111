//go:build linux

// The end-to-end tests build the node binary once, run `node up` as a child
// process on loopback addresses of their own (127.0.20.x and up, so that a
// stack a developer runs on 127.0.0.2.. is left alone), drive the blog over
// HTTP, run `node load`, break nodes with the fault commands, and check that
// Ctrl-C leaves no process behind. They need Linux (the orphan check reads
// /proc, and node up's children rely on the parent-death signal).

package launch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/nodebin"
	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/loadgen"
)

func TestStage1(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1, "127.0.20.2")
	if got := s.nodeNames(); got != "node-1" {
		t.Fatalf("stage 1 nodes = %s, want node-1", got)
	}
	url := s.state().URL
	if url != "http://127.0.20.2:8081" {
		t.Errorf("URL = %s, want node-1's app port, http://127.0.20.2:8081", url)
	}
	b := newBlogClient(t, url)
	b.signup("stage1_alice")
	id := b.post("Hello from stage 1")
	b.wantTitle(id, "Hello from stage 1")

	sum := s.load("--duration", "1500ms", "--rate", "20", "--users", "2", "--read-your-writes")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 || sum.ReadYourWrites.Violations != 0 {
		t.Errorf("load: %d ok, %d errors %v, %d lost, %d violations; want all ok and nothing lost",
			sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost, sum.ReadYourWrites.Violations)
	}
	if sum.ServedBy["node-1"] != sum.Sent {
		t.Errorf("served by %v, want all %d by node-1", sum.ServedBy, sum.Sent)
	}

	// Pause: the node holds its sockets but answers nothing.
	s.run("pause", "node-1")
	s.wantState("node-1", launch.StatePaused)
	if _, err := b.getWithin("/api/v1/posts/"+id, 500*time.Millisecond); err == nil || !isTimeout(err) {
		t.Errorf("GET while paused: %v, want a timeout", err)
	}
	s.run("resume", "node-1")
	b.wantTitle(id, "Hello from stage 1")

	// Kill: everything is gone, until start brings it back with its data.
	s.run("kill", "node-1")
	s.wantState("node-1", launch.StateDead)
	if _, err := b.get("/api/v1/posts/" + id); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("GET after kill: %v, want connection refused", err)
	}
	s.run("start", "node-1")
	s.wantState("node-1", launch.StateRunning)
	b.wantTitle(id, "Hello from stage 1") // written before the kill
	s.interrupt()
}

func TestStage2(t *testing.T) {
	t.Parallel()
	s := startStack(t, 2, "127.0.21.2")
	if got := s.nodeNames(); got != "db-1 app-1" {
		t.Fatalf("stage 2 nodes = %s, want db-1 app-1", got)
	}
	st := s.state()
	if st.URL != "http://127.0.21.30:8081" {
		t.Errorf("URL = %s, want app-1's app port, http://127.0.21.30:8081", st.URL)
	}
	b := newBlogClient(t, st.URL)
	b.signup("stage2_bob")
	id := b.post("Before the database died")
	b.wantTitle(id, "Before the database died")

	sum := s.load("--duration", "1500ms", "--rate", "20", "--users", "2")
	if sum.OK == 0 || sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load: %d ok, %d errors %v, %d lost; want all ok and nothing lost", sum.OK, sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}

	// docs/stages.md: kill the database and the app answers 503, quickly.
	s.run("kill", "db-1")
	s.wantState("db-1", launch.StateDead)
	s.wantState("app-1", launch.StateRunning)
	resp, err := b.get("/api/v1/posts/" + id)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET with db-1 dead: %v %v, want 503", status(resp), err)
	}
	// Start it again: same flags, same data; the app recovers by itself.
	s.run("start", "db-1")
	b.wantTitle(id, "Before the database died")

	// node add: one more app node joins and serves the same data.
	out := s.run("add", "app")
	if !strings.Contains(out, "added app-2") {
		t.Errorf("node add app said %q, want app-2", out)
	}
	app2 := s.node("app-2")
	resp, err = newBlogClient(t, app2.URL("app")).get("/api/v1/posts/" + id)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Served-By") != "app-2" {
		t.Errorf("GET on app-2: %v %v, want 200 served by app-2", status(resp), err)
	}

	// node stop: graceful, shown as stopped rather than dead.
	s.run("stop", "app-2")
	s.wantState("app-2", launch.StateStopped)

	// node add refuses, before planning anything, a role that does not
	// exist and a second primary; a store node added is a replica that
	// follows db-1, and says so.
	for role, want := range map[string]string{
		"bogus":   `"bogus" is not a role: roles are primary, replica`,
		"primary": "a stack has one primary (db-1); `" + filepath.Join(s.dir, "bin", "node") + " add replica` adds a store node that follows it",
	} {
		out, err := s.runErr("add", role)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("node add %s: %v\n%s\nwant a refusal saying %q", role, err, out, want)
		}
	}
	if got := s.nodeNames(); got != "db-1 app-1 app-2" {
		t.Errorf("nodes after the refused adds = %s, want db-1 app-1 app-2", got)
	}
	if out := s.run("add", "replica"); !strings.Contains(out, "added replica-1 as replica of db-1 (epoch") || !strings.Contains(out, "at 127.0.21.3:7070,") {
		t.Errorf("node add replica said %q, want replica-1 at 127.0.21.3 following db-1", out)
	}

	// node rm: a stopped node is forgotten, its data kept; a running one is
	// stopped gracefully first; the last node serving the URL is refused.
	out = s.run("rm", "app-2")
	if want := "its data stays in " + filepath.Join(s.dir, "data", "app-2"); !strings.Contains(out, "removed app-2 from the stack (it was not running)") || !strings.Contains(out, want) {
		t.Errorf("node rm app-2 said %q, want it removed, its data kept (%q)", out, want)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "app-2")); err != nil {
		t.Errorf("app-2's data after rm: %v, want it kept", err)
	}
	replica := s.node("replica-1")
	out = s.run("rm", "replica-1", "--purge-data")
	if !strings.Contains(out, "removed replica-1 from the stack (stopped gracefully in") || !strings.Contains(out, "deleted its data") {
		t.Errorf("node rm replica-1 --purge-data said %q, want it stopped, removed and its data deleted", out)
	}
	if alive(replica.PID) {
		t.Errorf("replica-1 (pid %d) still runs after rm", replica.PID)
	}
	if _, err := os.Stat(replica.Data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("replica-1's data after rm --purge-data: %v, want it gone", err)
	}
	if out, err := s.runErr("rm", "app-1"); err == nil || !strings.Contains(out, "app-1 is the last app node and serves the URL to open") {
		t.Errorf("node rm app-1: %v\n%s\nwant a refusal: it serves the URL to open", err, out)
	}
	if got := s.nodeNames(); got != "db-1 app-1" {
		t.Errorf("nodes after rm = %s, want db-1 app-1", got)
	}
	b.wantTitle(id, "Before the database died")
	s.interrupt()
}

func TestNodeThatCannotStartIsNamedWithItsLog(t *testing.T) {
	t.Parallel()
	// Hold node-1's gossip port (UDP, which node up does not check) so
	// that the node itself fails.
	pc, err := net.ListenPacket("udp", "127.0.22.2:7946")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dir := t.TempDir()
	cmd := exec.Command(nodebin.BuildNoRace(t), "up", "--stage", "1", "--dir", dir, "--base-addr", "127.0.22.2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("node up exit status %d (%v), want 1", code, err)
	}
	for _, want := range []string{"node-1 did not start", "last lines of " + filepath.Join(dir, "logs", "node-1.log"), "address already in use"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("node up output lacks %q:\n%s", want, out)
		}
	}
	checkNoOrphans(t, dir)
}

func TestSecondStackInTheSameDirIsRefused(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1, "127.0.23.2")
	out, err := exec.Command(nodebin.BuildNoRace(t), "up", "--stage", "1", "--dir", s.dir, "--base-addr", "127.0.24.2").CombinedOutput()
	if exitCode(err) == 0 || !bytes.Contains(out, []byte("a stack is already running from "+s.dir)) {
		t.Errorf("second node up in the same dir: %v\n%s\nwant a refusal naming the running stack", err, out)
	}
	out, err = exec.Command(nodebin.BuildNoRace(t), "up", "--stage", "1", "--dir", t.TempDir(), "--base-addr", "127.0.23.2").CombinedOutput()
	if exitCode(err) != 1 || !bytes.Contains(out, []byte("is in use")) {
		t.Errorf("node up on the addresses of a running stack: %v\n%s\nwant a port-in-use error", err, out)
	}
	s.interrupt()
}

// stack is a `node up` child process of a test.
type stack struct {
	t    testing.TB
	dir  string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
}

// startStack runs `node up --stage n [extra...]` on addresses from base
// and waits until it says the stage is ready. Cleanup kills it if the test did not
// interrupt it, and checks that nothing is left behind.
func startStack(t testing.TB, n int, base string, extra ...string) *stack {
	t.Helper()
	return startStackWith(t, nodebin.BuildNoRace(t), t.TempDir(), n, base, extra...)
}

// startStackIn is startStack on a directory of the caller's, which may hold
// an earlier stack's data.
func startStackIn(t testing.TB, dir string, n int, base string, extra ...string) *stack {
	t.Helper()
	return startStackWith(t, nodebin.BuildNoRace(t), dir, n, base, extra...)
}

// startStackWith is startStack with the node binary prog, on dir.
func startStackWith(t testing.TB, prog, dir string, n int, base string, extra ...string) *stack {
	t.Helper()
	s := &stack{t: t, dir: dir, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	args := append([]string{"up", "--stage", strconv.Itoa(n), "--dir", s.dir, "--base-addr", base, "--stop-timeout", "10s"}, extra...)
	s.cmd = exec.Command(prog, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	// If the test binary dies, node up dies, and its nodes with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				s.cmd.Process.Kill()
				<-s.done
			}
		}
		if t.Failed() {
			t.Logf("node up output:\n%s", s.out.String())
			s.dumpLogs()
		}
		checkNoOrphans(t, s.dir)
	})
	deadline := time.After(60 * time.Second)
	for !strings.Contains(s.out.String(), "is ready in") {
		select {
		case <-s.done:
			t.Fatalf("node up exited before the stage was ready:\n%s", s.out.String())
		case <-deadline:
			t.Fatalf("stage %d not ready after 60s:\n%s", n, s.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return s
}

// run runs `node CMD ARGS --dir DIR` and returns its output; failure
// fails the test.
func (s *stack) run(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(nodebin.BuildNoRace(s.t), append(args, "--dir", s.dir)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runErr runs `node CMD ARGS --dir DIR` and returns its output and error,
// for a command that is meant to fail.
func (s *stack) runErr(args ...string) (string, error) {
	s.t.Helper()
	out, err := exec.Command(nodebin.BuildNoRace(s.t), append(args, "--dir", s.dir)...).CombinedOutput()
	return string(out), err
}

// load runs a short `node load` against the stack and returns its summary.
func (s *stack) load(args ...string) loadgen.Summary {
	s.t.Helper()
	file := filepath.Join(s.t.TempDir(), "load.json")
	out := s.run(append([]string{"load", "--json", file}, args...)...)
	b, err := os.ReadFile(file)
	if err != nil {
		s.t.Fatalf("node load wrote no summary: %v\n%s", err, out)
	}
	var sum loadgen.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		s.t.Fatal(err)
	}
	if sum.Writes == nil || (sum.ReadYourWrites == nil && strings.Contains(strings.Join(args, " "), "read-your-writes")) {
		s.t.Fatalf("summary lacks the write checks:\n%s", out)
	}
	if !strings.Contains(out, "p99.9") || !strings.Contains(out, "served by") {
		s.t.Errorf("node load printed no readable summary:\n%s", out)
	}
	return sum
}

func (s *stack) state() launch.State {
	s.t.Helper()
	st, err := launch.LoadState(s.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

func (s *stack) node(name string) launch.Node {
	s.t.Helper()
	st := s.state()
	n, err := st.Find(name)
	if err != nil {
		s.t.Fatal(err)
	}
	return *n
}

func (s *stack) nodeNames() string {
	var names []string
	for _, n := range s.state().Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, " ")
}

// wantState waits until `node ps` shows the node in state (node up records
// an exit a moment after the process ends).
func (s *stack) wantState(name, state string) {
	s.t.Helper()
	testwait.RetryUntil(s.t, 5*time.Second, func() error {
		procs, _, up, err := launch.PS(s.dir)
		if err != nil {
			return err
		}
		if !up {
			return fmt.Errorf("node up is not running")
		}
		for _, p := range procs {
			if p.Name == name {
				if p.State != state {
					return fmt.Errorf("%s is %s, want %s", name, p.State, state)
				}
				if (state == launch.StateRunning || state == launch.StatePaused) && p.RSS == 0 {
					return fmt.Errorf("%s has no RSS", name)
				}
				return nil
			}
		}
		return fmt.Errorf("no node %s", name)
	})
	out := s.run("ps")
	if !strings.Contains(out, name) || !strings.Contains(out, state) {
		s.t.Errorf("node ps does not show %s %s:\n%s", name, state, out)
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for node up to stop
// every node and exit 0.
func (s *stack) interrupt() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("node up still running 30s after SIGINT:\n%s", s.out.String())
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Errorf("node up exit status %d after SIGINT, want 0:\n%s", code, s.out.String())
	}
	if !strings.Contains(s.out.String(), "every node stopped") {
		s.t.Errorf("node up did not report stopping every node:\n%s", s.out.String())
	}
	checkNoOrphans(s.t, s.dir)
}

func (s *stack) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(s.dir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		s.t.Logf("last lines of %s:\n%s", filepath.Base(l), strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
}

// checkNoOrphans fails if any pid of cluster.json is alive, or any process
// has the stack's directory in its command line.
func checkNoOrphans(t testing.TB, dir string) {
	t.Helper()
	if st, err := launch.LoadState(dir); err == nil {
		for _, n := range st.Nodes {
			if n.PID > 0 && alive(n.PID) {
				t.Errorf("%s (pid %d) is still alive", n.Name, n.PID)
			}
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, []byte(dir)) && alive(pid) {
			t.Errorf("process %d is left behind: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces, so look after the ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// blogClient is one user of the blog's JSON API.
type blogClient struct {
	t    testing.TB
	base string
	c    *http.Client
	// handle is the user's, where a test needs it.
	handle string
}

func newBlogClient(t testing.TB, base string) *blogClient {
	jar, _ := cookiejar.New(nil)
	return &blogClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 2 * time.Second}}
}

func (b *blogClient) send(method, path string, in any, want int) map[string]any {
	b.t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, b.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		b.t.Fatalf("%s %s = %s %s, want %d", method, path, resp.Status, raw, want)
	}
	var out map[string]any
	json.Unmarshal(raw, &out)
	return out
}

func (b *blogClient) signup(handle string) {
	b.t.Helper()
	b.send(http.MethodPost, "/api/v1/signup", map[string]string{"handle": handle, "email": handle + "@example.org", "password": "correct horse"}, http.StatusCreated)
}

func (b *blogClient) post(title string) string {
	b.t.Helper()
	out := b.send(http.MethodPost, "/api/v1/posts", map[string]any{"title": title, "body": "Some *Markdown*.", "tags": []string{"e2e"}, "published": true}, http.StatusCreated)
	p, _ := out["post"].(map[string]any)
	id, _ := p["id"].(string)
	if id == "" {
		b.t.Fatalf("POST /api/v1/posts answered %v, want a post id", out)
	}
	return id
}

// title reads a post and returns its title, or what went wrong.
func (b *blogClient) title(id string) string {
	b.t.Helper()
	resp, body, err := b.fetch("/api/v1/posts/"+id, b.c.Timeout)
	if err != nil {
		return "error: " + err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	var out struct {
		Post struct{ Title string } `json:"post"`
	}
	json.Unmarshal(body, &out)
	return out.Post.Title
}

// wantTitle waits until post id reads back with title (a node just
// started or resumed may take a moment on a busy machine).
func (b *blogClient) wantTitle(id, title string) {
	b.t.Helper()
	testwait.RetryUntil(b.t, 10*time.Second, func() error {
		if got := b.title(id); got != title {
			return fmt.Errorf("post %s reads %q, want title %q", id, got, title)
		}
		return nil
	})
}

// get fetches path; the body is read and closed.
func (b *blogClient) get(path string) (*http.Response, error) {
	return b.getWithin(path, b.c.Timeout)
}

func (b *blogClient) getWithin(path string, timeout time.Duration) (*http.Response, error) {
	resp, _, err := b.fetch(path, timeout)
	return resp, err
}

func (b *blogClient) fetch(path string, timeout time.Duration) (*http.Response, []byte, error) {
	c := *b.c
	c.Timeout = timeout
	resp, err := c.Get(b.base + path)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func status(r *http.Response) string {
	if r == nil {
		return "no answer"
	}
	return r.Status + " served by " + r.Header.Get("X-Served-By")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
