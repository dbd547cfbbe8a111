package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/node"
)

func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "keygen", "  (umask 077; node keygen > cluster.key)\n  node run --roles primary --addr 10.0.0.2 --cluster-key-file cluster.key\n", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	k, err := cluster.GenerateKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, k)
	return nil
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "node", node.Version())
	return nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "status [--dir DIR | --admin HOST:PORT] [--cluster-key-file FILE]",
		"  node status                      # the stack node up runs in .scalestack\n  node status --admin 10.0.0.2:9090 --cluster-key-file cluster.key\n", stderr)
	dir := dirFlag(fs)
	admin := fs.String("admin", "", "admin address of any node of a cluster started by hand (default: a running node of the stack in --dir)")
	asJSON := fs.Bool("json", false, "print the node's /status document as JSON")
	keys := addKeyFlags(fs, "/status wants the admin token derived from it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, err := adminAddr(*admin, *dir)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	var raw io.Writer
	if *asJSON {
		raw = stdout
	}
	st, err := getStatus(c, addr, keys, raw)
	if err != nil || *asJSON {
		return err
	}
	printStatus(stdout, st)
	return nil
}

// printStatus prints the cluster as one node sees it, as a table.
func printStatus(w io.Writer, st node.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "seen from %s (%s), version %s, up %s, %s\n\n", st.Name, strings.Join(st.Roles, ","), st.Version, st.Uptime, ready)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tSTATUS\tSTATE\tADDRESSES")
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	for _, m := range st.Members {
		var addrs []string
		for k, v := range m.Addrs {
			addrs = append(addrs, k+"="+v)
		}
		sort.Strings(addrs)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, strings.Join(m.Roles, ","), m.Status, m.State, strings.Join(addrs, " "))
	}
	tw.Flush()
}
