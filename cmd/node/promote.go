package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/scalestack/scalestack/pkg/node"
)

// runPromote hands the store primary over to replica NAME without losing a
// write: the primary stops taking writes, waits until NAME has everything
// durable, and passes the lease to it (docs/replication.md).
func runPromote(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("promote", "promote [--admin HOST:PORT] NAME", "  node promote --admin 127.0.0.2:9090 replica-1\n", stderr)
	admin := fs.String("admin", "127.0.0.1:9090", "admin address of any node of the cluster")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get("http://" + *admin + "/status")
	if err != nil {
		return fmt.Errorf("no node answers at %s (%v): give the admin address of a running node with --admin", *admin, err)
	}
	var st node.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read status from %s: %w", *admin, err)
	}
	addr := ""
	for _, m := range st.Members {
		if m.Name == name {
			addr = m.Addrs["store"]
		}
	}
	if addr == "" {
		return fmt.Errorf("no store node %q in the cluster seen from %s", name, *admin)
	}
	start := time.Now()
	resp, err = c.Post("http://"+addr+"/v1/promote", "", nil)
	if err != nil {
		return fmt.Errorf("promote %s: %w", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("promote %s: %s", name, body)
	}
	fmt.Fprintf(stdout, "%s is the primary (%s) after %v\n", name, body, time.Since(start).Round(time.Millisecond))
	return nil
}
