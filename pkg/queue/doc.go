// Package queue connects any node to the NATS servers of the cluster: a
// connection that follows the cluster as it changes, the job queue on
// JetStream (publish, consume, retry, dead letters) and stream leadership
// hand-over. It is the client side only and links no nats-server; the
// embedded server is pkg/queue/natsserver.
//
// Nodes with a store role (or --nats on) run a natsserver.Server, and the
// servers form one NATS cluster whose JetStream keeps durable streams: the
// job queue of the worker role (issue 9). Every node uses Connect with a
// function that returns the client URLs it currently knows, and gets a
// *nats.Conn and a jetstream.JetStream that follow the cluster as it
// changes. See docs/queue.md.
package queue
