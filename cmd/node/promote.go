package main

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// runPromote hands the store primary over to replica NAME without losing a
// write: the primary stops taking writes, waits until NAME has everything
// durable, and passes the lease to it (docs/replication.md).
func runPromote(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("promote", "promote [--admin HOST:PORT] NAME", "  node promote --admin 127.0.0.2:9090 replica-1\n", stderr)
	admin := fs.String("admin", "127.0.0.1:9090", "admin address of any node of the cluster")
	keys := addKeyFlags(fs, "/status wants the admin token derived from it")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 15 * time.Second}
	st, err := getStatus(c, *admin, keys, nil)
	if err != nil {
		return err
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
	resp, err := c.Post("http://"+addr+"/v1/promote", "", nil)
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
