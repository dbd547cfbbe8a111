// Package queue embeds a NATS server with JetStream in a node and connects
// any node to the NATS servers of the cluster.
//
// Nodes with a store role (or --nats on) run a Server. The servers learn
// each other's cluster URLs from membership (the node calls SetPeers on every
// change) and form one NATS cluster whose JetStream keeps durable streams:
// the job queue of the worker role (issue 9). Every other node uses Connect with a function that
// returns the client URLs it currently knows, and gets a *nats.Conn and a
// jetstream.JetStream that follow the cluster as it changes.
//
// A clustered server needs a second one before JetStream works; a node that
// will be the only NATS server can run Standalone instead, and then never
// clusters.
//
// Durability: every server syncs each JetStream write to disk before it is
// acknowledged (SyncAlways), and keeps its store under a persistent
// directory with a stable server name, so a restarted node rejoins as the
// same Raft peer with its data. See docs/queue.md.
package queue
