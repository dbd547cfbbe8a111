// Package server is the store role: a boltdb.DB at DataDir/store.db behind
// the HTTP API of pkg/store (routes and wire format in its package doc and
// docs/store.md), with metrics and a /status part.
//
// Around the API it holds what makes a group of store nodes one database:
// replication (ship.go on the primary, follow.go on a replica, frames of
// frame.go between them, snapshots for a replica that is new or too far
// behind), the lease a majority of the group grants the primary, with
// epochs that fence a deposed one (lease.go), and promotion and hand-over
// (promote.go). docs/replication.md describes the protocol.
//
// The role learns its peers through store.Resolver, which the node
// implements from membership; it imports no membership and no NATS.
package server
