package queue

// MaxReplicas is the most replicas Replicas asks for. Three survive the loss
// of one server with a quorum left; more only slow every write down.
const MaxReplicas = 3

// Replicas is the replica count for a stream or key-value bucket in a NATS
// cluster of servers servers: min(3, servers), and at least 1.
//
// JetStream fixes a stream's replicas when it is created and refuses a
// count above the servers it has, so a stream made while the cluster was
// smaller stays smaller until it is updated with a new count (streams can
// be scaled up by UpdateStream with more Replicas).
func Replicas(servers int) int {
	return max(1, min(MaxReplicas, servers))
}
