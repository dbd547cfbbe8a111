package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/node"
)

// The fault and inspection commands work on the stack `node up` started,
// found through --dir (default the same as node up's, or the stack whose
// binary DIR/bin/node this program is).

func runPS(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ps", "ps [--dir DIR]", "  node ps\n  node ps --dir /tmp/stack\n", stderr)
	dir := dirFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	procs, st, up, err := launch.PS(*dir)
	if err != nil {
		return err
	}
	upState := fmt.Sprintf("node up pid %d", st.UpPID)
	if !up {
		upState = "node up is not running"
	}
	fmt.Fprintf(stdout, "stage %d (%s) in %s, %s\n", st.Stage, st.Title, st.Dir, upState)
	for _, line := range primaryLines(procs) {
		if up {
			fmt.Fprintln(stdout, line)
		}
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tROLES\tLIVE ROLE\tADDRESS\tUPTIME\tRSS\tLAST EXIT")
	var total int64
	for _, p := range procs {
		pid, uptime, rss := "-", "-", "-"
		if p.State == launch.StateRunning || p.State == launch.StatePaused {
			pid = fmt.Sprint(p.PID)
			uptime = p.Uptime.Round(time.Second).String()
			rss = fmt.Sprintf("%.1f MiB", float64(p.RSS)/(1<<20))
			total += p.RSS
		}
		exit := p.Exit
		if exit == "" {
			exit = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.State, pid, rolesOf(p.Node), liveRole(p), nodeAddr(p.Node), uptime, rss, exit)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\ntotal RSS %.1f MiB\n", float64(total)/(1<<20))
	return nil
}

// rolesOf is the ROLES column: the roles a node started with, and at
// stage 10 the store group or service it belongs to: "primary(content)",
// "service(search)".
func rolesOf(n launch.Node) string {
	r := strings.Join(n.Roles, ",")
	if n.Group != "" {
		r += "(" + n.Group + ")"
	}
	return r
}

// liveRole is the LIVE ROLE column: what a running store node says it is
// now ("primary (epoch 3)", "replica of replica-1 (epoch 3)"); ROLES only
// says how it started. "-" for a node that is not running or not a store
// node: a dead node claims nothing.
func liveRole(p launch.Process) string {
	switch {
	case p.Store != nil:
		return p.Store.Describe(p.Name)
	case p.State == launch.StatePaused && launch.IsStoreNode(p.Roles):
		return "? (paused)"
	case p.State == launch.StateRunning && launch.IsStoreNode(p.Roles):
		return "? (no answer)"
	}
	return "-"
}

// primaryLines name the store node that may write now in each store
// group, when the stack has store nodes: the line a person looks for after
// killing a primary. Stages 1 to 9 have one group, so one line; stage 10
// has one line per service's group.
func primaryLines(procs []launch.Process) []string {
	var groups []string
	stores := map[string][]string{}
	primaries := map[string][]string{}
	for _, p := range procs {
		if !launch.IsStoreNode(p.Roles) {
			continue
		}
		if _, ok := stores[p.Group]; !ok {
			groups = append(groups, p.Group)
		}
		stores[p.Group] = append(stores[p.Group], p.Name)
		if p.Store != nil && p.Store.Writable() {
			primaries[p.Group] = append(primaries[p.Group], p.Name+" is "+p.Store.Describe(p.Name))
		}
	}
	var out []string
	for _, g := range groups {
		switch {
		case len(primaries[g]) > 0:
			out = append(out, strings.Join(primaries[g], "; "))
		case g == "":
			out = append(out, "no store node is primary now (a failover in progress, or the store is down)")
		default:
			out = append(out, fmt.Sprintf("no store node of the %s group is primary now (a failover in progress, or the group is down): %s writes wait", g, g))
		}
	}
	return out
}

func runKill(args []string, stdout, stderr io.Writer) error {
	return signalCommand("kill", "SIGKILL: the node dies at once, as in a power cut", args, stdout, stderr,
		func(dir, name string) (string, error) {
			n, err := launch.Kill(dir, name)
			return fmt.Sprintf("killed %s (pid %d)", name, n.PID), err
		})
}

func runPause(args []string, stdout, stderr io.Writer) error {
	return signalCommand("pause", "SIGSTOP: the node freezes with its sockets open, like a hung machine", args, stdout, stderr,
		func(dir, name string) (string, error) {
			n, err := launch.Pause(dir, name)
			return fmt.Sprintf("paused %s (pid %d): `%s resume %s` thaws it", name, n.PID, progName(), name), err
		})
}

func runResume(args []string, stdout, stderr io.Writer) error {
	return signalCommand("resume", "SIGCONT: a paused node carries on", args, stdout, stderr,
		func(dir, name string) (string, error) {
			n, err := launch.Resume(dir, name)
			return fmt.Sprintf("resumed %s (pid %d)", name, n.PID), err
		})
}

func runStop(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("stop", "stop NAME [--dir DIR] [--timeout D]", "  node stop app-1\n", stderr)
	dir := dirFlag(fs)
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait for the node to drain and exit")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	began := time.Now()
	n, err := launch.Stop(*dir, name, *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stopped %s (pid %d) in %.1fs: `%s start %s` starts it again\n", name, n.PID, time.Since(began).Seconds(), progName(), name)
	return nil
}

func runStart(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("start", "start NAME [--dir DIR]", "  node start db-1\n", stderr)
	dir := dirFlag(fs)
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := launch.RequestStart(ctx, *dir, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "started %s (pid %d), ready in %.1fs\n", n.Name, n.PID, time.Since(began).Seconds())
	return nil
}

func runAdd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("add", "add ROLE [--service NAME | --group NAME] [--dir DIR]\n\nROLE is one of "+strings.Join(node.BuiltRoles(), ", ")+
		".\nA store group has one primary: `add replica` adds a store node that follows it.\n"+
		"At stage 10 each service runs its own instances over its own store group: name which with\n"+
		"--service (add service) or --group (add replica).",
		"  node add app       # one more app node joins the cluster\n  node add replica   # one more store node follows the primary\n"+
			"  node add service --service search   # stage 10: search-2 joins and takes traffic\n"+
			"  node add replica --group content    # stage 10: content-db-4 follows the content group's primary\n", stderr)
	dir := dirFlag(fs)
	service := fs.String("service", "", "at stage 10, the service of the instance to add (add service)")
	group := fs.String("group", "", "at stage 10, the store group of the store node to add (add replica)")
	role, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if *service != "" && *group != "" && *service != *group {
		return fmt.Errorf("%w: --service %s and --group %s: a stage-10 service runs over the group of its name; give one", errUsage, *service, *group)
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := launch.RequestAdd(ctx, *dir, role, cmp.Or(*service, *group))
	if err != nil {
		return err
	}
	// A store node's --roles say how it started; its /status says what it
	// is now (a replica following the primary, or a primary by failover).
	what := "(roles " + strings.Join(n.Roles, ",") + ")"
	if n.Service != "" {
		what = "(an instance of " + n.Service + ")"
	}
	if launch.IsStoreNode(n.Roles) {
		c := &http.Client{Timeout: 2 * time.Second}
		if r, err := launch.FetchStoreRole(ctx, c, n.Admin, "", n.Name); err == nil {
			what = "as " + r.Describe(n.Name)
		}
	}
	fmt.Fprintf(stdout, "added %s %s at %s, pid %d, ready in %.1fs\n", n.Name, what, nodeAddr(n), n.PID, time.Since(began).Seconds())
	return nil
}

func runRm(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rm", "rm NAME [--dir DIR] [--purge-data]\n\n"+
		"Removes a node from the stack: a running node is stopped gracefully first (as stop does),\n"+
		"then forgotten. Its data and log stay on disk unless --purge-data; a node of the same name\n"+
		"added later starts from them.",
		"  node rm app-2\n  node rm replica-3 --purge-data\n", stderr)
	dir := dirFlag(fs)
	purge := fs.Bool("purge-data", false, "also delete the node's data directory and log")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rm, err := launch.RequestRemove(ctx, *dir, name, *purge)
	if err != nil {
		return err
	}
	how := "it was not running"
	if rm.Stopped {
		how = fmt.Sprintf("stopped gracefully in %.1fs", rm.StopTook.Seconds())
	}
	fmt.Fprintf(stdout, "removed %s from the stack (%s)\n", name, how)
	if rm.Purged {
		fmt.Fprintf(stdout, "deleted its data (%s) and log (%s)\n", rm.Data, rm.Log)
	} else {
		fmt.Fprintf(stdout, "its data stays in %s and its log in %s (--purge-data deletes them)\n", rm.Data, rm.Log)
	}
	if rm.URLMoved {
		fmt.Fprintf(stdout, "%s served the URL to open: open %s now\n", name, rm.OpenURL)
	}
	return nil
}

func runDeploy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("deploy", "deploy SERVICE [--dir DIR]\n\n"+
		"Restarts a stage-10 service's instances one at a time, on the stack's binary and each one's own\n"+
		"data: each is stopped gracefully (it marks itself draining, finishes its calls, exits), started\n"+
		"again, and waited for until it is ready and the gateways see it; then the next. A service with\n"+
		"one running instance gets a second for the time of the deploy, so that it never stops serving.\n"+
		"SERVICE is one of "+strings.Join(launch.Services(), ", ")+".",
		"  node deploy content\n  node load --duration 30s &   # then, while it runs:\n  node deploy search\n", stderr)
	dir := dirFlag(fs)
	service, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	d, err := launch.RequestDeploy(ctx, *dir, service, func(s launch.DeployStep) {
		fmt.Fprintf(stdout, "%5.1fs  %s\n", time.Since(began).Seconds(), s.Detail)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deployed %s: %s restarted in %.1fs, one at a time, never without a serving instance\n", d.Service, strings.Join(d.Restarted, ", "), d.Took.Seconds())
	return nil
}

// signalCommand is a command NAME [--dir DIR] that signals one node.
func signalCommand(cmd, what string, args []string, stdout, stderr io.Writer, do func(dir, name string) (string, error)) error {
	fs := newFlagSet(cmd, cmd+" NAME [--dir DIR]\n\n"+what, "  node "+cmd+" app-1\n", stderr)
	dir := dirFlag(fs)
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	msg, err := do(*dir, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", defaultDir(), "directory of the stack that up started (its cluster.json)")
}

// parseWithName parses "NAME [flags]" or "[flags] NAME [flags]": one
// positional argument among the flags.
func parseWithName(fs *flag.FlagSet, args []string) (string, error) {
	var name string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case name == "" && !strings.HasPrefix(a, "-"):
			name = a
		case !strings.HasPrefix(a, "-") || strings.Contains(a, "=") || isBoolFlag(fs, a) || i+1 == len(args):
			rest = append(rest, a)
		default: // a flag and its value
			rest = append(rest, a, args[i+1])
			i++
		}
	}
	if err := parseFlags(fs, rest); err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("%w: %s needs a name (see %s %s -h)", errUsage, fs.Name(), progName(), fs.Name())
	}
	return name, nil
}

// isBoolFlag reports whether arg (-name or --name) is a boolean flag of fs,
// which takes no separate value.
func isBoolFlag(fs *flag.FlagSet, arg string) bool {
	f := fs.Lookup(strings.TrimLeft(arg, "-"))
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
