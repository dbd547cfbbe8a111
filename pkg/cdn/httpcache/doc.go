// Package httpcache holds the rules of HTTP caching for a shared cache, as
// RFC 9111 and RFC 5861 state them, as pure functions: parsing Cache-Control,
// deciding whether a response may be stored, computing its freshness
// lifetime and current age, choosing between serving a stored response,
// serving it stale while revalidating, or revalidating it first, building
// the secondary cache key from Vary, and evaluating a client's conditional
// request against a stored response.
//
// The package does no I/O and reads no clock: every function takes the
// times it needs. The edge (pkg/cdn) applies these rules to live traffic;
// keeping them here lets them be tested with tables and fuzzed on their own.
package httpcache
