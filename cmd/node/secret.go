package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/scalestack/scalestack/pkg/cluster"
)

const secretExamples = `  export NODE_CLUSTER_KEY=$(cat cluster.key)
  curl -H "Authorization: Bearer $(node secret store)" 10.0.0.2:7070/v1/status
  REDISCLI_AUTH=$(node secret cache) redis-cli -h 10.0.0.4 INFO
  curl -X PURGE -H "Authorization: Bearer $(node secret purge)" 10.0.0.9:8000/posts/42
`

// runSecret prints the credential of one internal door derived from the
// cluster key, for an operator's curl or redis-cli (docs/security.md).
func runSecret(args []string, stdout, stderr io.Writer) error {
	usage := "secret " + strings.Join(cluster.Purposes(), "|")
	fs := newFlagSet("secret", usage, secretExamples, stderr)
	clusterKey := fs.String("cluster-key", "", "the cluster's key (prefer NODE_CLUSTER_KEY: a flag shows in ps)")
	purpose, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	if !slices.Contains(cluster.Purposes(), purpose) {
		return fmt.Errorf("%w: secret %q: say one of %s", errUsage, purpose, strings.Join(cluster.Purposes(), ", "))
	}
	key, err := cluster.ParseKey(*clusterKey)
	if err != nil {
		return fmt.Errorf("%w: --cluster-key: %v", errUsage, err)
	}
	if key == nil {
		return fmt.Errorf("%w: no cluster key: set NODE_CLUSTER_KEY (a cluster without a key has no secrets)", errUsage)
	}
	fmt.Fprintln(stdout, cluster.DeriveSecret(key, purpose))
	return nil
}
