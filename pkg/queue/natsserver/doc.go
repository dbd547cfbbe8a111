// Package natsserver embeds a NATS server with JetStream in a node: the
// server side of pkg/queue, apart so that a node that only connects (an app,
// a worker) does not link nats-server.
//
// A Server keeps its JetStream store under a persistent directory with a
// stable server name, syncs every JetStream write before acknowledging it,
// and routes to the peers the node gives it (SetPeers, from membership).
// A clustered server needs a second one before JetStream works; a node that
// will be the only NATS server runs Standalone. See docs/queue.md.
package natsserver
