package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/launch"
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
	printStatus(stdout, st, storeRoles(c, keys, st.Members))
	return nil
}

// storeRoles asks each alive store member for its live role (the role
// moves with the lease; membership only says how a node started), keyed
// by name, in a person's words.
func storeRoles(c *http.Client, keys keyFlags, members []node.MemberStatus) map[string]string {
	key, _ := keys.clusterKey() // getStatus has already checked the key
	token, _ := node.AdminToken(key)
	admins := map[string]string{}
	for _, m := range members {
		if m.Status == string(cluster.StatusAlive) && m.Addrs["store"] != "" && m.Addrs["admin"] != "" {
			admins[m.Name] = m.Addrs["admin"]
		}
	}
	out := map[string]string{}
	for name, r := range launch.FetchStoreRoles(context.Background(), c, token, admins) {
		out[name] = r.Describe(name)
	}
	return out
}

// printStatus prints the cluster as one node sees it, as a table, with
// each store member's live role from roles (name → "primary (epoch 3)").
func printStatus(w io.Writer, st node.Status, roles map[string]string) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "seen from %s (%s), version %s, up %s, %s\n\n", st.Name, strings.Join(st.Roles, ","), st.Version, st.Uptime, ready)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tSTATUS\tSTATE\tSTORE ROLE\tADDRESSES")
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	for _, m := range st.Members {
		var addrs []string
		for k, v := range m.Addrs {
			addrs = append(addrs, k+"="+v)
		}
		sort.Strings(addrs)
		state := m.State
		if state == "" && m.LastState != "" {
			state = "- (last: " + m.LastState + ")" // a dead member announces nothing
		}
		role := "-"
		switch {
		case roles[m.Name] != "":
			role = roles[m.Name]
		case m.Status == string(cluster.StatusAlive) && m.Addrs["store"] != "":
			role = "? (no answer)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, strings.Join(m.Roles, ","), m.Status, state, role, strings.Join(addrs, " "))
	}
	tw.Flush()
}
