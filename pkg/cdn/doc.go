// Package cdn is the edge role of a scalestack node: a caching reverse proxy
// that stands in front of the load balancers (stage 6) and serves public
// pages and static files from memory, following HTTP caching as RFC 9111 and
// RFC 5861 state it (the rules themselves live in pkg/cdn/httpcache).
//
// A request the edge can answer from a fresh stored response is a HIT; a
// stale one inside its stale-while-revalidate window is served as STALE while
// one background request refreshes it; otherwise the edge asks an origin (a
// load balancer found through Origins, round robin, or a fixed --edge-origin),
// with If-None-Match / If-Modified-Since when it holds a stale copy, and a 304
// turns into a REVALIDATED response. Concurrent misses for one URL make one
// origin request (coalescing); the others wait for it and share the response
// when it may be stored, or go to the origin themselves when it may not.
// When the origin fails, a stale response is served where stale-if-error
// allows it.
//
// Stored responses are kept under a byte budget in pkg/cache/lru. Each URL
// may have several variants (Vary). A response lists its surrogate keys in a
// Surrogate-Key header, which the edge indexes and strips; a purge, by URL or
// by key, arrives over HTTP (POST /_edge/purge with a bearer token) or over
// NATS (subject scalestack.purge), and an unsafe request that succeeds
// invalidates its URL.
//
// The edge fronts one site: the Host header is not part of the cache key.
package cdn
