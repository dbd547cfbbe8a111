package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the stack's description in the launcher's
// directory. `node up` writes it whenever a node starts or exits; the other
// commands (ps, kill, stop, start, pause, resume, add) read it.
const StateFile = "cluster.json"

// State is the content of cluster.json: the stack `node up` runs.
type State struct {
	// Stage and Title say which preset runs.
	Stage int    `json:"stage"`
	Title string `json:"title"`
	// Dir is the launcher's directory, absolute.
	Dir string `json:"dir"`
	// Binary is the node binary every child runs.
	Binary string `json:"binary"`
	// URL is the address a person opens.
	URL string `json:"url"`
	// SharedAddr is true when every node shares one address with distinct
	// ports (systems without 127.0.0.2, such as macOS).
	SharedAddr bool `json:"shared_addr"`
	// UpPID is the pid of `node up`, the parent of every node.
	UpPID int `json:"up_pid"`
	// Control is the 127.0.0.1 address of node up's control endpoint, which
	// `node start` and `node add` ask to spawn a process (node up stays the
	// parent of every node, so its Ctrl-C stops them all). Token
	// authenticates those requests; the file is readable by its owner only.
	Control string `json:"control"`
	Token   string `json:"token"`
	// StartedAt is when node up started; StoppedAt when it stopped every
	// node (zero while it runs).
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Nodes are every node node up started, in start order.
	Nodes []Node `json:"nodes"`
	// Spec is the stage as it was planned (after --scale), so that `node
	// add` picks the same flags for a role.
	Spec Stage `json:"spec"`
}

// Node is one node of the stack, planned and then live.
type Node struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Addr is the node's IP address.
	Addr string `json:"addr"`
	// Ports maps each port key the node uses ("app", "store", "gossip",
	// "admin", ...) to its port number.
	Ports map[string]int `json:"ports"`
	// Admin is host:port of /readyz and /status.
	Admin string `json:"admin"`
	// Args are the arguments after the binary: `node <args...>`.
	Args []string `json:"args"`
	// Log is the node's log file (stdout and stderr, appended on restart).
	Log string `json:"log"`
	// Data is the node's data directory, kept across restarts.
	Data string `json:"data"`
	// Group is the store group of a store node, or the service of a
	// service node (stage 10): "content" for content-db-1 and content-1.
	// "" is the one group of stages 1 to 9.
	Group string `json:"group,omitempty"`
	// Service is the service a service node serves; "" for other nodes.
	Service string `json:"service,omitempty"`
	// Slot is the node's address offset from the base address (addrBlocks),
	// which also spaces its ports when every node shares one address.
	Slot int `json:"slot"`

	// PID of the current or last process; 0 before the first start.
	PID int `json:"pid,omitempty"`
	// Running is true from spawn until node up has reaped the process.
	Running   bool      `json:"running"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// ReadyAt is when /readyz first answered 200 after the last start.
	ReadyAt time.Time `json:"ready_at,omitzero"`
	// Exit describes how the last process ended ("killed by SIGKILL",
	// "exited with status 0"); ExitClean is true for status 0.
	Exit      string    `json:"exit,omitempty"`
	ExitClean bool      `json:"exit_clean,omitempty"`
	ExitedAt  time.Time `json:"exited_at,omitzero"`
	// Addrs are the bound addresses the node reports in /status once ready.
	Addrs map[string]string `json:"addrs,omitempty"`
	// Starts counts the processes started for this node.
	Starts int `json:"starts"`
}

// URL returns http://addr of the node's port key, or "" if it has none.
func (n Node) URL(port string) string {
	if a, ok := n.Addrs[port]; ok && a != "" {
		return "http://" + a
	}
	if p, ok := n.Ports[port]; ok {
		return fmt.Sprintf("http://%s:%d", n.Addr, p)
	}
	return ""
}

// ErrNoStack is returned when the directory holds no cluster.json. The
// command that got it says how to start a stack, in the name it was called
// by.
var ErrNoStack = errors.New("no stack")

// LoadState reads DIR/cluster.json.
func LoadState(dir string) (State, error) {
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w in %s (no %s)", ErrNoStack, dir, StateFile)
	}
	if err != nil {
		return State{}, fmt.Errorf("read %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("read %s: %w", path, err)
	}
	return st, nil
}

// Find returns the node called name.
func (s *State) Find(name string) (*Node, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	return nil, fmt.Errorf("no node %q in the stack of %s: nodes are %v", name, s.Dir, names)
}

// save writes the state atomically (write a temporary file, rename it), so
// a reader never sees half a file. The file holds the control token, so it
// is readable by its owner only.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.Dir, StateFile)
	tmp, err := os.CreateTemp(s.Dir, ".cluster-*.json")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
