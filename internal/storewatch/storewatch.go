// Package storewatch watches replicated store nodes from outside, over
// their HTTP API (/v1/status, /v1/checksum): which node is primary, at
// which epoch, and when each epoch was first seen. The end-to-end
// failover tests, internal/testcluster, the fault runs (internal/faultrun)
// and bench/replication all ask these questions of real nodes, in-process
// or not, and ask them here.
package storewatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/scalestack/scalestack/pkg/store/server"
)

// Node is a store node as a watcher reaches it.
type Node struct {
	Name string
	// Addr is the node's store API address, host:port.
	Addr string
	// Token is the store port's credential
	// (cluster.DeriveSecrets(key).Store); "" for a cluster without a key.
	Token string
}

// client polls nodes. A paused or cut-off node answers nothing, so a poll
// gives up after two seconds; a watcher polls each node from a goroutine of
// its own, so one silent node delays no other.
var client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
	MaxIdleConnsPerHost: 4,
}}

// GetJSON reads url into out, presenting token as the store's bearer
// token when it is set.
func GetJSON(ctx context.Context, token, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}

// Status reads the node's /v1/status.
func Status(ctx context.Context, n Node) (server.Status, error) {
	var st server.Status
	if err := GetJSON(ctx, n.Token, "http://"+n.Addr+"/v1/status", &st); err != nil {
		return server.Status{}, fmt.Errorf("%s: %w", n.Name, err)
	}
	return st, nil
}

// Replication reads the replication section of the node's /v1/status; a
// node without one (a store that does not replicate) is an error.
func Replication(ctx context.Context, n Node) (server.ReplicationStatus, error) {
	st, err := Status(ctx, n)
	if err != nil {
		return server.ReplicationStatus{}, err
	}
	if st.Replication == nil {
		return server.ReplicationStatus{}, fmt.Errorf("%s: no replication status", n.Name)
	}
	return *st.Replication, nil
}

// Checksum reads the node's /v1/checksum: the CRC-32C of its data and the
// LSN it is at.
func Checksum(ctx context.Context, n Node) (crc uint32, lsn uint64, err error) {
	var out struct {
		CRC uint32 `json:"crc32c"`
		LSN uint64 `json:"lsn"`
	}
	if err := GetJSON(ctx, n.Token, "http://"+n.Addr+"/v1/checksum", &out); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", n.Name, err)
	}
	return out.CRC, out.LSN, nil
}

// Primary returns the one node that says it is primary with its lease
// still good, and its status; an error if none or several do. A primary
// whose lease ran out (a resumed one) refuses writes, so it does not count;
// nor does a node that does not answer.
func Primary(ctx context.Context, nodes []Node) (Node, server.ReplicationStatus, error) {
	var found Node
	var st server.ReplicationStatus
	var names []string
	for _, n := range nodes {
		s, err := Replication(ctx, n)
		if err != nil || !leads(s) {
			continue
		}
		found, st = n, s
		names = append(names, n.Name)
	}
	switch len(names) {
	case 0:
		return Node{}, server.ReplicationStatus{}, errors.New("no store node is primary with a good lease")
	case 1:
		return found, st, nil
	}
	return Node{}, server.ReplicationStatus{}, fmt.Errorf("several store nodes say primary: %v", names)
}

// NewPrimary is Primary once failover has happened: it is an error until
// the primary is a node other than old at an epoch above oldEpoch.
func NewPrimary(ctx context.Context, nodes []Node, old string, oldEpoch uint64) (Node, server.ReplicationStatus, error) {
	n, st, err := Primary(ctx, nodes)
	if err != nil {
		return Node{}, server.ReplicationStatus{}, err
	}
	if n.Name == old || st.Epoch <= oldEpoch {
		return Node{}, server.ReplicationStatus{}, fmt.Errorf("primary is still %s at epoch %d, want another node above epoch %d", n.Name, st.Epoch, oldEpoch)
	}
	return n, st, nil
}

// leads reports whether a node may take writes: primary, with a lease
// that has not run out (a store without failover has no lease at all).
func leads(st server.ReplicationStatus) bool {
	return st.Role == server.RolePrimary && (st.Lease == nil || st.Lease.ValidForMS > 0)
}
