package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/store"
)

// runPromote hands the store primary over to replica NAME without losing a
// write: the primary stops taking writes, waits until NAME has everything
// durable, and passes the lease to it (docs/replication.md).
func runPromote(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("promote", "promote [--dir DIR | --admin HOST:PORT] NAME",
		"  node promote replica-1           # the stack node up runs in .scalestack\n  NODE_CLUSTER_KEY=$KEY node promote --admin 10.0.0.2:9090 --tls-ca ca.pem db-2\n", stderr)
	dir := dirFlag(fs)
	admin := fs.String("admin", "", "admin address of any node of a cluster started by hand (default: a running node of the stack in --dir)")
	keys := addKeyFlags(fs, "/status wants the admin token derived from it")
	tlsCA := fs.String("tls-ca", "", "PEM CA of the cluster's internal TLS, when its nodes run with --tls-*: the store port speaks https")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	key, err := keys.clusterKey()
	if err != nil {
		return err
	}
	k, err := cluster.ParseKey(key)
	if err != nil {
		return fmt.Errorf("%w: --cluster-key: %v", errUsage, err)
	}
	secrets := cluster.DeriveSecrets(k)
	scheme, c := "http://", &http.Client{Timeout: 15 * time.Second}
	if *tlsCA != "" {
		tc, err := caConfig(*tlsCA)
		if err != nil {
			return err
		}
		scheme = "https://"
		c.Transport = &http.Transport{TLSClientConfig: tc}
	}
	adminAt, err := adminAddr(*admin, *dir)
	if err != nil {
		return err
	}
	st, err := getStatus(&http.Client{Timeout: 15 * time.Second}, adminAt, keys, nil)
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
		return fmt.Errorf("no store node %q in the cluster seen from %s: `%s status` lists the nodes", name, adminAt, progName())
	}
	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, scheme+addr+"/v1/promote", nil)
	if err != nil {
		return fmt.Errorf("promote %s: %w", name, err)
	}
	if secrets.Store != "" {
		req.Header.Set("Authorization", "Bearer "+secrets.Store)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("promote %s: %w", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return fmt.Errorf("promote %s: the store port refused the request (%s): give the cluster's key in NODE_CLUSTER_KEY", name, wireError(body))
	default:
		return fmt.Errorf("promote %s: %s", name, wireError(body))
	}
	msg, err := promoteResult(body, time.Since(start))
	if err != nil {
		return fmt.Errorf("promote %s: %w", name, err)
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// promoteResult renders a store node's answer to POST /v1/promote as one
// line: who is the primary now, at which epoch, how long it took, and what
// the former primary does.
func promoteResult(body []byte, took time.Duration) (string, error) {
	var r struct {
		Primary string `json:"primary"`
		Epoch   uint64 `json:"epoch"`
		From    string `json:"from"` // the primary that handed over; "" if Primary already was
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Primary == "" {
		return "", fmt.Errorf("unexpected answer %q", bytes.TrimSpace(body))
	}
	if r.From == "" {
		return fmt.Sprintf("%s is already the primary, at epoch %d", r.Primary, r.Epoch), nil
	}
	return fmt.Sprintf("%s is the primary at epoch %d after %v; %s handed over and follows it", r.Primary, r.Epoch, took.Round(time.Millisecond), r.From), nil
}

// wireError is the message of a store error answer ({"error": "..."}), or
// the body itself if it is not one.
func wireError(body []byte) string {
	var e store.WireError
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(bytes.TrimSpace(body))
}

// caConfig returns the client TLS configuration of a command that talks to
// a cluster's internal ports: servers verified against the CA in file.
func caConfig(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: --tls-ca: %v", errUsage, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: --tls-ca %s holds no PEM certificate", errUsage, file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
