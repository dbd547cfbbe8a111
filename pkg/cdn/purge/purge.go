// Package purge is the wire format of edge purges: the subject the edges
// listen on and the message published there (also the body of the edge's
// POST /_edge/purge). The edge (pkg/cdn) owns the format; publishers (the
// app's and the workers' purgers) import this leaf package rather than the
// edge itself. docs/edge.md describes the message.
package purge

import (
	"encoding/json"
	"fmt"
)

// Subject is the NATS subject purge messages are published on (core NATS:
// at most once; an edge that may have missed some empties itself).
const Subject = "scalestack.purge"

// Message names what is purged: URLs (paths with their query, or absolute
// URLs whose host is ignored) and surrogate keys whose stored responses are
// removed, or All, which removes every stored response.
type Message struct {
	URLs []string `json:"urls,omitempty"`
	Keys []string `json:"keys,omitempty"`
	All  bool     `json:"all,omitempty"`
}

// Encode returns m as published on Subject.
func Encode(m Message) ([]byte, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode purge: %w", err)
	}
	return data, nil
}

// Decode reads a message published on Subject.
func Decode(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("decode purge: %w", err)
	}
	return m, nil
}
