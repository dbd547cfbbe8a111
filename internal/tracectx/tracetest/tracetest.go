// Package tracetest helps tests see the trace context a component sends.
package tracetest

import (
	"net/http"
	"sync"
)

// Tap is an http.RoundTripper that remembers the traceparent header of
// every request it sends, then sends it with http.DefaultTransport. Give
// it as the transport of a client under test (a store client, say). Safe
// for concurrent use.
type Tap struct {
	mu   sync.Mutex
	sent []string
}

// RoundTrip records r's traceparent ("" when it has none) and sends r.
func (t *Tap) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.sent = append(t.sent, r.Header.Get("Traceparent"))
	t.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// Take returns the traceparents recorded since the last Take, in the order
// sent, and forgets them.
func (t *Tap) Take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.sent
	t.sent = nil
	return out
}
