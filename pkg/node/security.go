package node

import (
	"crypto/tls"

	"github.com/scalestack/scalestack/pkg/store"
)

// The node's internal doors and the keys it hands its roles
// (docs/security.md). From --cluster-key come one secret per door
// (n.secrets): the store port's bearer token, the cache's AUTH password,
// NATS's password, the edge's purge token and the admin token. The roles
// that serve a door require its secret; the roles that knock present it.
// Without a key every secret is empty and every door open, which Validate
// allows on loopback only. --tls-* add TLS to the store, cache and NATS
// ports, and make the node's clients verify the peer they reach.

// serverTLS is the TLS configuration of the node's internal listeners, nil
// without --tls-*.
func (n *Node) serverTLS() *tls.Config {
	if n.tls == nil {
		return nil
	}
	return n.tls.Server
}

// clientTLS is the TLS configuration of the node's clients of internal
// listeners, nil without --tls-*.
func (n *Node) clientTLS() *tls.Config {
	if n.tls == nil {
		return nil
	}
	return n.tls.Client
}

// cachePassword is the password of the cluster's cache nodes:
// --cache-password when given, else the one derived from the key.
func (n *Node) cachePassword() string {
	if p := n.cfg.RoleConfig.Cache.Password; p != "" {
		return p
	}
	return n.secrets.Cache
}

// newStoreClient returns the store client of the app and worker roles: it
// finds the store nodes of the default group in membership and presents
// the store token. (The stage-10 services will each take
// newGroupClient(their --group).)
func (n *Node) newStoreClient() *store.Client { return n.newGroupClient(store.DefaultGroup) }

// newGroupClient returns a store client of group: it finds that group's
// store nodes in membership, and only them.
func (n *Node) newGroupClient(group string) *store.Client {
	return store.NewClient(store.ClientConfig{Resolver: n, Group: group, Token: n.secrets.Store, TLS: n.clientTLS()})
}
