package queue

import "sync"

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

// replicaGoal is what a set of streams' Ensure keeps: the replicas they
// should have now (Replicas of the servers there are) against the count
// last ensured, so that Ensure asks JetStream nothing until the cluster
// has grown. Safe for concurrent use.
type replicaGoal struct {
	servers func() int // nil: one server
	mu      sync.Mutex
	have    int // replicas as last ensured; 0 before
}

// want returns the replicas the streams should have now.
func (g *replicaGoal) want() int {
	if g.servers == nil {
		return 1
	}
	return Replicas(g.servers())
}

// pending returns the replicas to ensure, and whether that is more than
// was last ensured (Ensure has work to do).
func (g *replicaGoal) pending() (int, bool) {
	want := g.want()
	g.mu.Lock()
	defer g.mu.Unlock()
	return want, g.have < want
}

// ensured records that the streams have want replicas.
func (g *replicaGoal) ensured(want int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.have = max(g.have, want)
}
