// Package launch is the local launcher behind `node up`: it starts the nodes
// of a stage preset as child processes of one machine, each on its own
// loopback address with the standard ports, so that the stack looks like
// separate machines; waits until every node is ready; and supervises them
// until it is told to stop, when it stops every node gracefully.
//
// The launcher restarts nothing by itself: a node that dies stays dead
// until `node start NAME`, because watching what a stage does without a
// node is the point. It stays the parent of every node it runs, including
// those started later by `node start` or `node add` from another terminal
// (they ask it through a small control endpoint), so that one Ctrl-C stops
// everything and, on Linux, its death takes every node with it. The same
// endpoint runs `node deploy`, which restarts a stage-10 service's
// instances one at a time (deploy.go).
//
// The stack is described in DIR/cluster.json (State), which the fault
// commands read: `node ps`, `node kill`, `node stop`, `node pause` and
// `node resume` signal the pids it lists.
package launch

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a launcher.
type Config struct {
	// Stage is the preset to start, after Stage.Scale. Required.
	Stage Stage
	// Dir holds cluster.json, logs/NAME.log and data/NAME. Default
	// ".scalestack" in the current directory. Data is kept across runs;
	// Fresh removes it first.
	Dir string
	// Binary is the node program of the stack. Open installs a copy of it
	// at DIR/bin/node, which every child runs as `DIR/bin/node run ...`
	// and the commands printed for the stack name (the program itself may
	// be a temporary file of `go run`). Default: this program
	// (os.Executable).
	Binary string
	// BaseAddr is the address of offset 0 of the address table
	// (addrBlocks): db-1 and stage 1's node-1 are there, app-1 at base+28,
	// lb-1 at base+48, and so on, the same in every stage. Empty means
	// 127.0.0.2, or, where the machine has no 127.0.0.2 (macOS), 127.0.0.1
	// for every node with distinct ports. Tests give another range
	// (127.0.1.2) so that they do not collide with a stack a developer runs.
	BaseAddr string
	// Roles are the role names `node run` knows, node.BuiltRoles(), the
	// one list of them: `node add` refuses any other before planning.
	// Required; cmd/node gives it (this package does not import pkg/node,
	// which composes a whole node).
	Roles []string
	// LogLevel is each node's --log-level. Default "info".
	LogLevel string
	// ReadyTimeout bounds the wait for every node's /readyz. Default 60s:
	// a stage is ready in seconds, and a slow machine should not fail.
	ReadyTimeout time.Duration
	// StopTimeout is how long Close waits after SIGTERM before it sends
	// SIGKILL. Default 15s: a node drains for 1s, then closes in order.
	StopTimeout time.Duration
	// Fresh removes the data and logs of an earlier run before starting.
	Fresh bool
	// Progress receives the live progress line while nodes start. Nil
	// means none. On a terminal the line is redrawn in place.
	Progress io.Writer
	// Events receives one human line per change after start: a node that
	// exits, is started again or is added. Nil means none.
	Events io.Writer
	// Logger receives the launcher's own log lines (nil = discard).
	Logger *slog.Logger
}

// DefaultConfig returns the configuration of `node up` with no flags.
func DefaultConfig() Config {
	return Config{
		Stage:        DefaultStage(),
		Dir:          ".scalestack",
		LogLevel:     "info",
		ReadyTimeout: 60 * time.Second,
		StopTimeout:  15 * time.Second,
	}
}

// Validate checks the configuration; errors name the flag to change.
func (c *Config) Validate() error {
	if len(c.Stage.Nodes) == 0 {
		return errors.New("launch: the stage has no nodes")
	}
	if c.Dir == "" {
		return errors.New("launch: --dir is empty")
	}
	if len(c.Roles) == 0 {
		return errors.New("launch: Config.Roles is empty: give node.BuiltRoles()")
	}
	if c.BaseAddr != "" {
		a, err := netip.ParseAddr(c.BaseAddr)
		if err != nil || !a.Is4() || !a.IsLoopback() {
			return fmt.Errorf("launch: --base-addr %q: want an IPv4 loopback address such as 127.0.0.2 (node up runs a stack on this machine)", c.BaseAddr)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("launch: --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.ReadyTimeout <= 0 {
		return errors.New("launch: --ready-timeout must be positive")
	}
	if c.StopTimeout <= 0 {
		return errors.New("launch: --stop-timeout must be positive")
	}
	return nil
}

// Launcher runs one stack of nodes as child processes.
type Launcher struct {
	cfg  Config
	log  *slog.Logger
	plan planner

	mu       sync.Mutex
	st       State
	procs    map[string]*child // running processes, by node name
	closing  bool
	reapers  sync.WaitGroup
	ctrl     *controlServer
	watch    *storeWatch // the failover watcher (watch.go)
	eventsMu sync.Mutex  // serializes appends to DIR/events.jsonl
	// deploying holds the services a deploy runs for (deploy.go).
	deploying map[string]bool
	ready     atomic.Bool
	closeErr  error
	closed    sync.Once
}

// child is one running node process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
}

// New validates cfg and returns a launcher ready to Open.
func New(cfg Config) (*Launcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("launch: find this program for the nodes: %w", err)
		}
		cfg.Binary = exe
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("launch: --dir %q: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Launcher{cfg: cfg, log: log, procs: map[string]*child{}}, nil
}

// Open prepares the directory, plans every node (names, addresses, ports,
// arguments), writes cluster.json and starts every node's process. It does
// not wait for readiness: WaitReady does. If it fails after starting
// processes, Close stops them.
func (l *Launcher) Open() error {
	if !supported() {
		return errors.New("launch: up needs Linux or macOS; run each node by hand with the run command instead (docs/cluster.md)")
	}
	if err := l.prepareDir(); err != nil {
		return err
	}
	bin, err := installBinary(l.cfg.Binary, l.cfg.Dir)
	if err != nil {
		return err
	}
	base, shared, err := chooseAddressing(l.cfg.BaseAddr)
	if err != nil {
		return err
	}
	l.plan = planner{dir: l.cfg.Dir, base: base, shared: shared, logLevel: l.cfg.LogLevel}
	nodes, err := l.plan.plan(l.cfg.Stage)
	if err != nil {
		return fmt.Errorf("launch: plan %s: %w", l.cfg.Stage, err)
	}
	for _, n := range nodes {
		if err := portsFree(n); err != nil {
			return err
		}
	}
	if err := l.followData(nodes); err != nil {
		return err
	}
	ctrl, err := openControl(l, rand.Text())
	if err != nil {
		return fmt.Errorf("launch: control endpoint: %w", err)
	}

	l.startWatch()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctrl = ctrl
	l.st = State{
		Stage: l.cfg.Stage.Number, Title: l.cfg.Stage.Title, Spec: l.cfg.Stage,
		Dir: l.cfg.Dir, Binary: bin, SharedAddr: shared,
		UpPID: os.Getpid(), Control: ctrl.addr(), Token: ctrl.token,
		StartedAt: time.Now().UTC(), Nodes: nodes,
	}
	if i := slices.IndexFunc(nodes, func(n Node) bool { return l.cfg.Stage.specOf(n.Name).Prefix == l.cfg.Stage.Open.Prefix }); i >= 0 {
		l.st.URL = nodes[i].URL(l.cfg.Stage.Open.Port)
	}
	if err := l.st.save(); err != nil {
		return err
	}
	for i := range l.st.Nodes {
		if err := l.spawnLocked(&l.st.Nodes[i]); err != nil {
			l.st.save()
			return err
		}
	}
	return l.st.save()
}

// prepareDir creates DIR, logs/ and data/, refusing a directory whose
// stack is still running (two launchers would fight over the ports and
// the state file).
func (l *Launcher) prepareDir() error {
	dir := l.cfg.Dir
	if old, err := LoadState(dir); err == nil {
		if old.StoppedAt.IsZero() && upAlive(old.UpPID) {
			return fmt.Errorf("launch: a stack is already running from %s (node up pid %d): stop it with Ctrl-C in its terminal, or use another --dir", dir, old.UpPID)
		}
		var alive []string
		for _, n := range old.Nodes {
			if _, ok := lookupNode(n); ok {
				alive = append(alive, fmt.Sprintf("%s (pid %d)", n.Name, n.PID))
			}
		}
		if len(alive) > 0 {
			return fmt.Errorf("launch: nodes of an earlier stack in %s are still running: %s; end each with `%s kill NAME --dir %s`", dir, strings.Join(alive, ", "), old.Command(), dir)
		}
	}
	if l.cfg.Fresh {
		for _, sub := range []string{"data", "logs", StateFile, EventsFile} {
			if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
				return fmt.Errorf("launch: --fresh: %w", err)
			}
		}
	}
	for _, sub := range []string{"logs", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("launch: --dir %s: %w", dir, err)
		}
	}
	return nil
}

// upAlive reports whether pid is a running `node up`.
func upAlive(pid int) bool {
	if pid <= 0 || pid == os.Getpid() {
		return false
	}
	info, ok := readProc(pid)
	return ok && info.state != 'Z' && slices.Contains(info.args, "up")
}

// chooseAddressing returns the first node's address and whether every node
// shares it. Without an explicit base it tries 127.0.0.2: Linux routes all
// of 127.0.0.0/8 to loopback, macOS only 127.0.0.1 unless aliases are added.
func chooseAddressing(base string) (netip.Addr, bool, error) {
	if base != "" {
		a := netip.MustParseAddr(base)
		if !canBind(a) {
			return netip.Addr{}, false, fmt.Errorf("launch: --base-addr %s cannot be bound on this machine: leave --base-addr out to use 127.0.0.1 with distinct ports", base)
		}
		return a, a == netip.MustParseAddr("127.0.0.1"), nil
	}
	a := netip.MustParseAddr("127.0.0.2")
	if canBind(a) {
		return a, false, nil
	}
	return netip.MustParseAddr("127.0.0.1"), true, nil
}

// portsFree checks that every TCP port of a planned node can be bound, so
// that a stack already running on these addresses is reported before any
// process starts, and no other process can pass for one of ours.
func portsFree(n Node) error {
	for _, d := range standardPorts {
		port, ok := n.Ports[d.key]
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(n.Addr, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("launch: port %d (%s of %s) on %s is in use: is another stack running on these addresses? Stop it, or give this one other addresses with --base-addr", port, d.key, n.Name, n.Addr)
		}
		ln.Close()
	}
	return nil
}

func canBind(a netip.Addr) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// childEnv is the environment of a node: this one without NODE_* variables,
// since `node run` reads every unset flag from NODE_<FLAG> and a variable
// meant for node up (or left over in the shell) must not configure every
// node of the stack.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NODE_") })
}

// spawnLocked starts n's process, appending to its log, and a goroutine
// that reaps it. l.mu is held.
func (l *Launcher) spawnLocked(n *Node) error {
	f, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("launch: log of %s: %w", n.Name, err)
	}
	defer f.Close() // the child holds its own descriptor
	fmt.Fprintf(f, "%s %s %s\n", startMarker, time.Now().Format(time.RFC3339), shellQuote(append([]string{l.st.Binary}, n.Args...)))
	cmd := exec.Command(l.st.Binary, n.Args...)
	cmd.Dir = l.cfg.Dir
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("launch: start %s: %w", n.Name, err)
	}
	n.PID = cmd.Process.Pid
	n.Running = true
	n.StartedAt = time.Now().UTC()
	n.ReadyAt = time.Time{}
	n.Exit, n.ExitClean, n.ExitedAt = "", false, time.Time{}
	n.Addrs = nil
	n.Starts++
	c := &child{cmd: cmd, done: make(chan struct{})}
	l.procs[n.Name] = c
	l.log.Info("node started", "node", n.Name, "pid", n.PID, "args", n.Args)
	l.reapers.Add(1)
	go l.reap(n.Name, c)
	return nil
}

// startMarker begins the lines node up writes into a node's log before each
// start, so that the log tail of a failure shows only the last run.
const startMarker = "--- node up: starting"

// reap waits for a node's process to end and records how it ended.
func (l *Launcher) reap(name string, c *child) {
	defer l.reapers.Done()
	err := c.cmd.Wait()
	how, clean := describeExit(c.cmd.ProcessState, err)
	l.mu.Lock()
	n, _ := l.st.Find(name)
	if n != nil && n.PID == c.cmd.Process.Pid {
		n.Running = false
		n.Exit, n.ExitClean, n.ExitedAt = how, clean, time.Now().UTC()
	}
	if l.procs[name] == c {
		delete(l.procs, name)
	}
	if err := l.st.save(); err != nil {
		l.log.Warn("save state", "err", err)
	}
	closing := l.closing
	l.mu.Unlock()
	close(c.done)
	l.log.Info("node exited", "node", name, "pid", c.cmd.Process.Pid, "how", how)
	kind := EventExited
	if closing {
		kind = EventStopped
	}
	l.emit(Event{Kind: kind, Node: name, Detail: fmt.Sprintf("%s %s (pid %d): %s", name, kind, c.cmd.Process.Pid, how)})
}

// describeExit says how a process ended, in a person's words.
func describeExit(ps *os.ProcessState, err error) (string, bool) {
	if ps == nil {
		return fmt.Sprintf("lost: %v", err), false
	}
	if sig, ok := signaled(ps); ok {
		return "killed by " + sig, false
	}
	if ps.ExitCode() == 0 {
		return "exited cleanly (status 0)", true
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode()), false
}

// emit reports one event of the stack: its Detail as a line on the Events
// writer, and the event as a JSON line in DIR/events.jsonl (watch.go).
func (l *Launcher) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if l.cfg.Events != nil {
		fmt.Fprintf(l.cfg.Events, "%s  %s\n", e.Time.Local().Format("15:04:05"), e.Detail)
	}
	l.appendEvent(e)
}

// Ready reports whether every node answered /readyz since it started.
func (l *Launcher) Ready() bool { return l.ready.Load() }

// State returns a copy of the stack's current state.
func (l *Launcher) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.Nodes = slices.Clone(st.Nodes)
	return st
}

// Close stops every running node gracefully, in waves (the service nodes
// after their callers, the store nodes last): SIGTERM to a wave at once (each node drains and closes in its own
// order), SIGCONT to wake a paused one so it can act on it, SIGKILL to any
// still running StopTimeout after its SIGTERM. It then
// stops the control endpoint and records the end in cluster.json. Calling
// it again returns the first result.
func (l *Launcher) Close() error {
	l.closed.Do(func() {
		l.stopWatch() // first: nodes going down is not a failover
		l.closeErr = l.stopAll(l.cfg.StopTimeout)
	})
	return l.closeErr
}

// Kill ends every node with SIGKILL at once; a second Ctrl-C uses it while
// Close waits. Close must still be called (or be in progress) to finish.
func (l *Launcher) Kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.procs {
		send(c.cmd.Process.Pid, sigKill)
	}
}

func (l *Launcher) stopAll(timeout time.Duration) error {
	l.mu.Lock()
	l.closing = true
	ctrl := l.ctrl
	// Waves, clients before servers: every node but the service and store
	// nodes first (edges, lbs, apps, workers, caches finish their work
	// while what they call is still there), then the service nodes (stage
	// 10: they finish the gateways' last calls and publish their outboxes),
	// then the store nodes. Stopped all at once, a worker's jobs in hand
	// wait on a store that has already gone.
	var front, services, back []string
	for name := range l.procs {
		n, err := l.st.Find(name)
		switch {
		case err == nil && IsStoreNode(n.Roles):
			back = append(back, name)
		case err == nil && slices.Contains(n.Roles, "service"):
			services = append(services, name)
		default:
			front = append(front, name)
		}
	}
	procs := maps.Clone(l.procs)
	l.mu.Unlock()
	if ctrl != nil {
		ctrl.close()
	}
	var killed []string
	for _, wave := range [][]string{front, services, back} {
		for _, name := range wave {
			send(procs[name].cmd.Process.Pid, sigTerm)
			send(procs[name].cmd.Process.Pid, sigCont)
		}
		// Each node has the whole timeout from its own SIGTERM: the store
		// nodes' clock starts when the first wave is done, not at Ctrl-C.
		deadline := time.After(timeout)
		for _, name := range wave {
			c := procs[name]
			if deadline != nil {
				select {
				case <-c.done:
				case <-deadline:
					deadline = nil // fired: every later node is killed without waiting
				}
			}
			if deadline == nil {
				select {
				case <-c.done:
				default:
					send(c.cmd.Process.Pid, sigKill)
					killed = append(killed, name)
				}
			}
		}
	}
	l.reapers.Wait()
	l.ready.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Dir != "" {
		l.st.StoppedAt = time.Now().UTC()
		if err := l.st.save(); err != nil {
			return err
		}
	}
	if len(killed) > 0 {
		slices.Sort(killed)
		return fmt.Errorf("launch: %s did not stop within %s of SIGTERM and were killed", strings.Join(killed, ", "), timeout)
	}
	return nil
}

// StartNode starts the process of a node that is not running, with the
// arguments and data of its earlier run, and waits until it is ready.
func (l *Launcher) StartNode(ctx context.Context, name string) (Node, error) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return Node{}, errors.New("node up is stopping")
	}
	n, err := l.st.Find(name)
	if err != nil {
		l.mu.Unlock()
		return Node{}, err
	}
	if n.Running {
		l.mu.Unlock()
		return Node{}, fmt.Errorf("%s is already running (pid %d)", name, n.PID)
	}
	err = l.spawnLocked(n)
	l.st.save()
	l.mu.Unlock()
	if err != nil {
		return Node{}, err
	}
	l.emit(Event{Kind: EventStarted, Node: name, Detail: fmt.Sprintf("%s started again (pid %d)", name, n.PID)})
	return l.waitOne(ctx, name)
}

// AddNode plans one more node of role (the stage's flags for that role, the
// next name and address), starts it joined to the others and waits until
// it is ready. group names the store group or service of the node, where
// the stage runs the role in several (stage 10: `node add service
// --service search`, `node add replica --group content`); "" otherwise.
func (l *Launcher) AddNode(ctx context.Context, role, group string) (Node, error) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return Node{}, errors.New("node up is stopping")
	}
	spec, err := l.checkAddRole(role, group)
	if err != nil {
		l.mu.Unlock()
		return Node{}, err
	}
	n, err := l.plan.next(spec, l.st.Nodes)
	if err != nil {
		l.mu.Unlock()
		return Node{}, err
	}
	l.st.Nodes = append(l.st.Nodes, n)
	np := &l.st.Nodes[len(l.st.Nodes)-1]
	err = l.spawnLocked(np)
	l.st.save()
	pid := np.PID
	l.mu.Unlock()
	if err != nil {
		return Node{}, err
	}
	l.emit(Event{Kind: EventAdded, Node: n.Name, Detail: fmt.Sprintf("%s added (roles %s, %s, pid %d)", n.Name, role, n.Addr, pid)})
	return l.waitOne(ctx, n.Name)
}

func (l *Launcher) waitOne(ctx context.Context, name string) (Node, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	if err := l.waitReady(ctx, []string{name}, nil); err != nil {
		return Node{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.st.Find(name)
	if err != nil {
		return Node{}, err
	}
	return *n, nil
}

// checkAddRole refuses, before anything is planned, a role `node add`
// cannot start: one node run does not know (Config.Roles), and a second
// primary. A store group has one configured primary; every other store
// node is a replica that follows it, and may become the primary by
// failover, so a "primary" added would be a replica under the wrong name.
// It returns the group of the stage the new node joins. l.mu is held.
func (l *Launcher) checkAddRole(role, group string) (NodeSpec, error) {
	if !slices.Contains(l.cfg.Roles, role) {
		return NodeSpec{}, fmt.Errorf("%q is not a role: roles are %s, e.g. `%s add app`", role, strings.Join(l.cfg.Roles, ", "), l.st.Command())
	}
	spec, err := l.st.Spec.specForAdd(role, group)
	if err != nil {
		return NodeSpec{}, err
	}
	if role == "primary" {
		i := slices.IndexFunc(l.st.Nodes, func(n Node) bool { return slices.Contains(n.Roles, "primary") && n.Group == spec.Group })
		if i >= 0 && spec.Group != "" {
			return NodeSpec{}, fmt.Errorf("the %s group has one primary, which it started as %s and elects among its store nodes; `%s add replica --group %s` adds a store node that follows it", spec.Group, l.st.Nodes[i].Name, l.st.Command(), spec.Group)
		}
		if i >= 0 {
			return NodeSpec{}, fmt.Errorf("a stack has one primary (%s); `%s add replica` adds a store node that follows it", l.st.Nodes[i].Name, l.st.Command())
		}
	}
	return spec, nil
}

// shellQuote renders a command line that can be pasted into a shell, for
// the log marker and for a person who wants to run a node by hand.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
