// Package lb is the load balancer role of a scalestack node: an HTTP/1.1
// reverse proxy that spreads requests over the app nodes it learns of through
// a Discovery (membership in a cluster, or a static --backends list).
//
// It chooses a backend by round robin (or smooth weighted round robin, or
// least connections), keeps sessions on one node when asked to (--sticky),
// takes nodes out of rotation by active health checks (GET /readyz with rise
// and fall counts) and by passive ejection (consecutive connection errors or
// 5xx, with exponential back-off, as Envoy's outlier detection does; a 503
// with Retry-After is an app's dependency failing, not the app, and does not
// count), and
// retries a request on another node only when that cannot apply it twice:
// when the connection to the first node failed before anything was sent, or
// when the method is idempotent. A retry budget (a ratio of requests plus a
// minimum per second, as Finagle and Envoy do) keeps retries from multiplying
// load when every node is failing.
//
// The proxy speaks HTTP/1.1 itself rather than through net/http (see
// server.go, upstream.go and internal/httpwire, the framing it shares with
// the edge): one goroutine per client connection
// reads a request head into a reused buffer, writes the request to a pooled
// backend connection in one write, reads the response head and streams the
// body back, with no per-request allocation and no hand-off between
// goroutines. Backend choice is a lock-free read of an immutable pool
// snapshot. Active health checks use net/http. HTTP/2, TLS and protocol
// upgrades are out of scope.
package lb
