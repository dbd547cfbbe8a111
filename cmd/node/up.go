package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/node"
)

const upExamples = `  node up                      # stage 9, the monolith scaled out, in ./.scalestack
  node up --stage 1            # everything in one process
  node up --stage 2 --fresh    # separate database, starting from empty data
  node up --stage 3 --scale app=3   # stage 3 with three app nodes instead of two
  node up --stage 10           # microservices: five services, each with a store group of its own (26 processes)
  node up --stage 10 --scale service/content=3   # three content instances

  # then, in another terminal, the stack's own copy of this program
  .scalestack/bin/node ps
  .scalestack/bin/node kill db-1
  .scalestack/bin/node start db-1
  .scalestack/bin/node load --rate 50 --duration 30s   # the URL comes from .scalestack/cluster.json
`

func runUp(args []string, stdout, stderr io.Writer) error {
	cfg := launch.DefaultConfig()
	cfg.Dir = defaultDir()
	fs := newFlagSet("up", "up [--stage N] [--dir DIR] [--scale role=K,...] [flags]", upExamples, stderr)
	stage := fs.Int("stage", cfg.Stage.Number, "stage preset to start: "+stageList())
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "directory of the stack: cluster.json, logs/NAME.log, data/NAME")
	scale := fs.String("scale", "", "resize groups of the stage, e.g. app=3,replica=2 (a role the stage lacks is added); at stage 10 name the service or store group: service/content=3,replica/search=1")
	fs.StringVar(&cfg.BaseAddr, "base-addr", "", "address of db-1 (node-1 at stage 1); every node name has its own address from there, app-1 at +28 (.30), lb-1 at +48 (.50), edge-1 at +58 (.60) (default 127.0.0.2, or 127.0.0.1 with distinct ports where 127.0.0.2 does not exist)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level of every node: debug, info, warn, error")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", cfg.ReadyTimeout, "how long to wait for every node to be ready")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "on Ctrl-C, how long a node may take to stop before it is killed")
	fs.BoolVar(&cfg.Fresh, "fresh", false, "delete the data and logs of an earlier run in --dir first")
	var roleFlags []string
	fs.Func("flags", "extra node run flag of every node of a role, role=--flag=value, e.g. edge=--edge-origin-latency=50ms (repeatable)", func(v string) error {
		roleFlags = append(roleFlags, v)
		return nil
	})
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := launch.LookupStage(*stage)
	if err != nil {
		return fmt.Errorf("%w: --stage: %v", errUsage, err)
	}
	counts, err := launch.ParseScale(*scale)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Roles = node.BuiltRoles()
	for key := range counts {
		if role := launch.ScaleRole(key); !slices.Contains(cfg.Roles, role) {
			return fmt.Errorf("%w: --scale %s: %q is not a role: roles are %s", errUsage, key, role, strings.Join(cfg.Roles, ", "))
		}
	}
	if st, err = st.Scale(counts); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	for _, f := range roleFlags {
		if st, err = st.WithRoleFlag(f); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	cfg.Stage = st
	cfg.Progress = stdout
	cfg.Events = stdout
	l, err := launch.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %s", errUsage, strings.TrimPrefix(err.Error(), "launch: "))
	}

	// Ctrl-C reaches node up alone (the nodes run in their own process
	// groups): the first stops every node gracefully, a second kills them.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	fmt.Fprintf(stdout, "starting %s in %s\n", st, cfg.Dir)
	began := time.Now()
	if err := l.Open(); err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	readyErr := make(chan error, 1)
	go func() { readyErr <- l.WaitReady(ctx) }()
	select {
	case err = <-readyErr:
	case s := <-sig:
		cancel()
		<-readyErr
		fmt.Fprintf(stdout, "\n%s: stopping every node\n", s)
		return stopStack(l, sig, stdout)
	}
	cancel()
	if err != nil {
		fmt.Fprintf(stdout, "stopping the other nodes\n")
		l.Close()
		return err
	}
	state := l.State()
	fmt.Fprintf(stdout, "\n%s is ready in %.1fs\n\n", st, time.Since(began).Seconds())
	printNodes(stdout, state)
	fmt.Fprintf(stdout, "\nOpen %s\n\n", state.URL)
	printCommands(stdout, state)
	fmt.Fprintf(stdout, "Logs in %s. Ctrl-C stops every node.\n\n", filepath.Join(state.Dir, "logs"))

	s := <-sig
	fmt.Fprintf(stdout, "\n%s: stopping every node (Ctrl-C again kills them)\n", s)
	return stopStack(l, sig, stdout)
}

// stopStack closes the launcher; a second signal kills the nodes at once.
func stopStack(l *launch.Launcher, sig <-chan os.Signal, stdout io.Writer) error {
	done := make(chan error, 1)
	go func() { done <- l.Close() }()
	select {
	case err := <-done:
		if err == nil {
			fmt.Fprintln(stdout, "every node stopped")
		}
		return err
	case s := <-sig:
		fmt.Fprintf(stdout, "%s again: killing every node\n", s)
		l.Kill()
		<-done
		return errors.New("nodes killed during shutdown")
	}
}

// printCommands prints the commands to try on the stack from another
// terminal, each as it can be pasted: the stack's own binary (it finds
// the stack without --dir), from the directory it is relative to.
func printCommands(w io.Writer, st launch.State) {
	bin := st.Command()
	where := ""
	if !filepath.IsAbs(bin) {
		if wd, err := os.Getwd(); err == nil {
			where = " (in " + wd + ")"
		}
	}
	fmt.Fprintf(w, "From another terminal%s:\n", where)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	cmds := [][2]string{
		{"ps", "every node: state, pid, memory"},
		{"status", "the cluster as its nodes see it"},
		{"kill NAME", "kill a node (stop NAME: gracefully; pause NAME: freeze it)"},
		{"start NAME", "start it again, same flags and data"},
		{"load", "send blog users to " + st.URL + " and summarize"},
	}
	// The example service is content, the one docs/stages.md deploys, when
	// the stack runs it.
	if i := slices.IndexFunc(st.Nodes, func(n launch.Node) bool { return n.Service != "" }); i >= 0 {
		svc := st.Nodes[i].Service
		if slices.ContainsFunc(st.Nodes, func(n launch.Node) bool { return n.Service == "content" }) {
			svc = "content"
		}
		cmds = append(cmds,
			[2]string{"deploy " + svc, "restart the instances of " + svc + " one at a time, each drained first"},
			[2]string{"add service --service " + svc, "one more " + svc + " instance joins and takes traffic"})
	}
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s %s\t# %s\n", bin, c[0], c[1])
	}
	tw.Flush()
}

// printNodes prints the table of nodes node up started.
func printNodes(w io.Writer, st launch.State) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tADDRESS\tADMIN\tPID")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\thttp://%s/status\t%d\n", n.Name, rolesOf(n), nodeAddr(n), n.Admin, n.PID)
	}
	tw.Flush()
}

// nodeAddr is the address column: the IP, or IP:port of the node's main
// port when nodes share an address.
func nodeAddr(n launch.Node) string {
	for _, k := range []string{"edge", "lb", "app", "service", "cache", "store"} {
		if p, ok := n.Ports[k]; ok {
			return fmt.Sprintf("%s:%d", n.Addr, p)
		}
	}
	return n.Addr
}

func stageList() string {
	var s []string
	for _, st := range launch.Stages() {
		s = append(s, fmt.Sprintf("%d (%s)", st.Number, st.Title))
	}
	return strings.Join(s, ", ")
}
