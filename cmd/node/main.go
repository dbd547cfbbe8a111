// Command node is scalestack's one binary. It runs a node in one or more
// roles (`node run`), and drives a local stack of nodes (`node up` and the
// fault commands). With no arguments it runs stage 1: the whole blog in one
// process on 127.0.0.1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// command is one subcommand of `node`.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order `node help` shows them.
func commands() []command {
	return []command{
		{"run", "run a node in one or more roles", runNode},
		{"flags", "list every flag of node run by role; flags -markdown writes docs/flags.md", runFlags},
		{"up", "start a stage's stack on this machine, one process per node", runUp},
		{"ps", "list the nodes of the stack node up runs: state, pid, memory", runPS},
		{"kill", "kill a node of the stack (SIGKILL)", runKill},
		{"stop", "stop a node of the stack gracefully (SIGTERM)", runStop},
		{"start", "start a stopped or killed node again, same flags and data", runStart},
		{"pause", "freeze a node of the stack (SIGSTOP)", runPause},
		{"resume", "thaw a paused node (SIGCONT)", runResume},
		{"add", "add one more node of a role to the stack", runAdd},
		{"rm", "remove a node from the stack, stopping it gracefully first", runRm},
		{"deploy", "restart a stage-10 service's instances one at a time, each drained first", runDeploy},
		{"load", "send an open-loop load of blog users to a stack and summarize", runLoad},
		{"seed", "fill a blog with authors, posts, comments and follows", runSeed},
		{"promote", "hand the store primary over to a replica without losing a write", runPromote},
		{"jobs", "list, replay and count queued jobs: jobs dead|retry ID|--all|stats", runJobs},
		{"status", "print the cluster as one node sees it", runStatus},
		{"keygen", "print a fresh cluster key for --cluster-key", runKeygen},
		{"secret", "print a credential derived from the cluster key: secret store|cache|nats|purge|admin", runSecret},
		{"version", "print the version", runVersion},
	}
}

// exitCode maps an error to the process exit status: 0 for help asked
// for (-h, --help: the convention), 2 for a usage or configuration mistake
// (the message says how to fix it), 1 otherwise.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// errUsage marks errors in how the command was called.
var errUsage = errors.New("usage error")

func main() {
	err := dispatch(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "node: "+strings.TrimPrefix(err.Error(), errUsage.Error()+": ")+noStackHint(err))
	}
	os.Exit(exitCode(err))
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return runStage1(stdout, stderr)
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return dispatch([]string{args[1], "-h"}, stdout, stderr)
		}
		printHelp(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	return fmt.Errorf("%w: unknown command %q: run `%s help` for the list", errUsage, name, progName())
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `node is scalestack's single binary: every role of the stack, and the tools to run it.

`)
	fmt.Fprint(w, named(`Usage:
  node                       run stage 1: the whole blog in one process on 127.0.0.1
  node <command> [flags]     run a command; every command takes -h

Commands:
`))
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nExamples:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range [][2]string{
		{"node up --stage 2", "stage 2's stack on this machine, in .scalestack"},
		{".scalestack/bin/node ps", "from another terminal: the stack's own copy of this program"},
		{"node", "stage 1 on http://127.0.0.1:8081"},
		{"node run --roles primary --name db-1 --addr 127.0.0.2", ""},
		{"node run --roles app --name app-1 --addr 127.0.0.30 --join 127.0.0.2:7946", ""},
		{"node status --admin 127.0.0.2:9090", ""},
		{"node keygen", ""},
	} {
		line := named("  " + e[0])
		if e[1] != "" {
			line += "\t# " + e[1]
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Every flag of "run" can also be set by an environment variable: --join is
NODE_JOIN, --cluster-key is NODE_CLUSTER_KEY, and so on; NODE_<FLAG>_FILE names a
file holding the value instead (NODE_CACHE_PASSWORD_FILE=/run/secrets/cache).
Secrets belong there or in --cluster-key-file, not on the command line.
"%s flags" lists them all by role, as docs/flags.md does.
`, progName())
}
