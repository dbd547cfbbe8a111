package faultrun

import (
	"time"

	"github.com/scalestack/scalestack/internal/storewatch"
)

// pollEvery is how often the run polls nodes: for a readiness or a
// primary, and for the epochs of the store nodes.
const pollEvery = 100 * time.Millisecond

// watched is n as internal/storewatch reaches it: its store address and
// the store token the harness presents.
func (n *Node) watched() storewatch.Node {
	return storewatch.Node{Name: n.Name, Addr: n.Store(), Token: n.storeToken}
}

// watchedNodes is watched for each of ns.
func watchedNodes(ns []*Node) []storewatch.Node {
	out := make([]storewatch.Node, len(ns))
	for i, n := range ns {
		out[i] = n.watched()
	}
	return out
}
