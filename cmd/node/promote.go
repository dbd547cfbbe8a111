package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// runPromote hands the store primary over to replica NAME without losing a
// write: the primary stops taking writes, waits until NAME has everything
// durable, and passes the lease to it (docs/replication.md).
func runPromote(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("promote", "promote [--admin HOST:PORT] NAME",
		"  ./node promote --admin 127.0.0.2:9090 replica-1\n  NODE_CLUSTER_KEY=$KEY ./node promote --admin 10.0.0.2:9090 --tls-ca ca.pem db-2\n", stderr)
	admin := fs.String("admin", "127.0.0.1:9090", "admin address of any node of the cluster")
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
	st, err := getStatus(&http.Client{Timeout: 15 * time.Second}, *admin, keys, nil)
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
		return fmt.Errorf("promote %s: the store port refused the request (%s): give the cluster's key in NODE_CLUSTER_KEY", name, body)
	default:
		return fmt.Errorf("promote %s: %s", name, body)
	}
	fmt.Fprintf(stdout, "%s is the primary (%s) after %v\n", name, body, time.Since(start).Round(time.Millisecond))
	return nil
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
