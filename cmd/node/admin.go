package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/scalestack/scalestack/pkg/node"
)

// keyFlags are the cluster key flags of the commands that talk to a
// cluster (status, promote, jobs): the key itself or a file holding it,
// each also from the environment (NODE_CLUSTER_KEY, NODE_CLUSTER_KEY_FILE).
type keyFlags struct{ key, file *string }

func addKeyFlags(fs *flag.FlagSet, what string) keyFlags {
	return keyFlags{
		key:  fs.String("cluster-key", "", "the cluster's key, when it has one: "+what+" (prefer NODE_CLUSTER_KEY or --cluster-key-file)"),
		file: fs.String("cluster-key-file", "", "file holding the cluster's key (instead of --cluster-key)"),
	}
}

// clusterKey returns the key the flags give, "" for none.
func (k keyFlags) clusterKey() (string, error) {
	key, err := node.ClusterKey(*k.key, *k.file)
	if err != nil {
		return "", usageIfConfig(err)
	}
	return key, nil
}

// getStatus reads the /status document of the node whose admin endpoints
// are at admin, presenting the admin token derived from the cluster key.
func getStatus(c *http.Client, admin string, keys keyFlags, raw io.Writer) (node.Status, error) {
	var st node.Status
	key, err := keys.clusterKey()
	if err != nil {
		return st, err
	}
	token, err := node.AdminToken(key)
	if err != nil {
		return st, fmt.Errorf("%w: --cluster-key: %v", errUsage, err)
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+"/status", nil)
	if err != nil {
		return st, fmt.Errorf("%w: --admin %q: %v", errUsage, admin, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("no node answers at %s (%v): give the admin address of a running node with --admin", admin, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized && token == "":
		return st, fmt.Errorf("the node at %s wants the admin token of its cluster: give the cluster key (--cluster-key-file FILE or NODE_CLUSTER_KEY)", admin)
	case resp.StatusCode == http.StatusUnauthorized:
		return st, fmt.Errorf("the node at %s refused the admin token: its cluster has another key than the one given", admin)
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("status from %s: %s: %s", admin, resp.Status, body)
	}
	if raw != nil {
		_, err := io.Copy(raw, resp.Body)
		return st, err
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read status from %s: %w", admin, err)
	}
	return st, nil
}
