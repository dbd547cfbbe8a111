package main

import (
	"encoding/json"
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
	fs := newFlagSet("keygen", "keygen", "  ./node keygen > cluster.key                     # once; copy it to every machine, mode 0600\n  NODE_CLUSTER_KEY=$(cat cluster.key) ./node run --roles primary --addr 10.0.0.2\n", stderr)
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
	fs := newFlagSet("status", "status [--admin HOST:PORT]", "  node status --admin 127.0.0.2:9090\n", stderr)
	admin := fs.String("admin", "127.0.0.1:9090", "admin address of any node of the cluster")
	asJSON := fs.Bool("json", false, "print the node's /status document as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + *admin + "/status")
	if err != nil {
		return fmt.Errorf("no node answers at %s (%v): give the admin address of a running node with --admin", *admin, err)
	}
	defer resp.Body.Close()
	if *asJSON {
		_, err := io.Copy(stdout, resp.Body)
		return err
	}
	var st node.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("read status from %s: %w", *admin, err)
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
