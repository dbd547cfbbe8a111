package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/scalestack/scalestack/pkg/launch"
)

// progName is this program as a person would type it again: "go run
// ./cmd/node" under `go run` (the go command builds it into a temporary
// go-build directory, which is gone when it exits), else the name it was
// called by, as typed (".scalestack/bin/node", "./node"). The help texts
// and hints use it, never a bare "node": on a machine with Node.js that
// runs Node.js.
func progName() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
		return "go run ./cmd/node"
	}
	return os.Args[0]
}

// commandLine matches a line of a usage or example text that runs this
// program: "node" first, after the indentation, a subshell's "(umask 077; "
// or NAME=value assignments. (A command substitution, "$(node ", is the
// other place a command starts in our examples.)
var commandLine = regexp.MustCompile(`(?m)^(\s*(?:\(umask \d+; )?(?:[A-Z_]+=\S*\s+)*)node( |$)`)

// named rewrites the command lines of a usage or example text, written
// with "node" as the program, to name this program as progName does.
func named(text string) string {
	prog := progName()
	text = commandLine.ReplaceAllString(text, "${1}"+strings.ReplaceAll(prog, "$", "$$")+"${2}")
	return strings.ReplaceAll(text, "$(node ", "$("+prog+" ")
}

// defaultDir is --dir when none is given: DIR when this program is the
// binary DIR/bin/node of a stack (so that the commands `node up` prints
// need no --dir), else .scalestack in the working directory, as node up's.
func defaultDir() string {
	if exe, err := os.Executable(); err == nil {
		if dir, ok := launch.StackDirOf(exe); ok {
			return dir
		}
	}
	return launch.DefaultConfig().Dir
}

// noStackHint says how to start a stack when a command found none.
func noStackHint(err error) string {
	if !errors.Is(err, launch.ErrNoStack) {
		return ""
	}
	return fmt.Sprintf(": start one with `%s up`, or give its directory with --dir", progName())
}

// stackAddrs are the addresses of a stack's running nodes that the
// commands talking to a cluster (status, promote, jobs) use.
type stackAddrs struct {
	// Admin is host:port of the admin endpoint of a running node, a store
	// node if one runs (its /status carries the store's replication,
	// which status and promote are about), and AdminOf that node's name.
	Admin, AdminOf string
	// NATS are the client addresses of the NATS servers, which run inside
	// the running store nodes.
	NATS []string
}

// findStack reads the stack that `node up` runs in dir and returns the
// addresses of its running nodes. flag names the command's flag for a
// cluster started by hand ("--admin HOST:PORT"), which the errors offer
// beside --dir.
func findStack(dir, flag string) (stackAddrs, error) {
	var s stackAddrs
	procs, st, _, err := launch.PS(dir)
	if errors.Is(err, launch.ErrNoStack) {
		return s, fmt.Errorf("%w: %v: give the directory of a stack started with `%s up` with --dir, or, for a cluster started by hand with `run`, a node's address with %s",
			errUsage, err, progName(), flag)
	}
	if err != nil {
		return s, err
	}
	adminIsStore := false
	for _, p := range procs {
		if p.State != launch.StateRunning {
			continue
		}
		store := slices.Contains(p.Roles, "primary") || slices.Contains(p.Roles, "replica")
		if s.Admin == "" || store && !adminIsStore {
			s.Admin, s.AdminOf, adminIsStore = p.Admin, p.Name, store
		}
		if a := hostPort(p.Node, "nats"); store && a != "" {
			s.NATS = append(s.NATS, a)
		}
	}
	if s.Admin == "" {
		return s, fmt.Errorf("no node of the stack in %s is running: `%s ps%s` shows how each ended", st.Dir, progName(), dirArg(dir))
	}
	return s, nil
}

// hostPort is the address of a node's port key: the one it reported once
// ready, else the planned one; "" if it has none.
func hostPort(n launch.Node, key string) string {
	if a := n.Addrs[key]; a != "" {
		return a
	}
	if p, ok := n.Ports[key]; ok {
		return net.JoinHostPort(n.Addr, strconv.Itoa(p))
	}
	return ""
}

// adminAddr is the admin address a command talks to: --admin when given,
// else a running node's of the stack in dir (findStack).
func adminAddr(flagValue, dir string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	s, err := findStack(dir, "--admin HOST:PORT")
	return s.Admin, err
}

// natsAddrs are the NATS servers a command talks to: --nats when given
// (a comma list), else the running store nodes' of the stack in dir.
func natsAddrs(flagValue, dir string) ([]string, error) {
	if flagValue != "" {
		return strings.Split(flagValue, ","), nil
	}
	s, err := findStack(dir, "--nats HOST:PORT")
	if err != nil {
		return nil, err
	}
	if len(s.NATS) == 0 {
		return nil, fmt.Errorf("no store node of the stack in %s is running, and the NATS servers run inside them: `%s ps%s` shows how each ended", dir, progName(), dirArg(dir))
	}
	return s.NATS, nil
}

// dirArg is " --dir DIR" for a hint, or "" when DIR is where the command
// looks without it.
func dirArg(dir string) string {
	if dir == defaultDir() {
		return ""
	}
	return " --dir " + dir
}
