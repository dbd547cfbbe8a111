package node

import (
	"bytes"
	"testing"

	"github.com/scalestack/scalestack/pkg/cluster"
)

// The app's and the worker's cache tier seal entries with a key derived
// from the cluster key for that purpose alone: every node with the same
// cluster key derives the same one, and it is none of the other secrets.
func TestCacheMACKey(t *testing.T) {
	key, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, b := &Node{cfg: Config{ClusterKey: key}}, &Node{cfg: Config{ClusterKey: key}}
	got := a.cacheMACKey()
	if len(got) < 16 || !bytes.Equal(got, b.cacheMACKey()) {
		t.Fatalf("cacheMACKey() = %q and %q, want one key of at least 16 bytes on both nodes", got, b.cacheMACKey())
	}
	raw, _ := cluster.ParseKey(key)
	if string(got) == cluster.DeriveSecret(raw, "nats") || bytes.Contains(got, raw) {
		t.Errorf("cacheMACKey() is another secret or holds the cluster key")
	}
	if got := (&Node{}).cacheMACKey(); got != nil {
		t.Errorf("cacheMACKey() without a cluster key = %q, want nil (the tier's development key)", got)
	}
}
