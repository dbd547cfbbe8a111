// Package store is scalestack's database as its callers see it: buckets of
// ordered keys, atomic transactions with conditions, and the HTTP/JSON API
// that carries them, with its Go Client.
//
// It holds the domain and the client side only, and links no database
// engine, so that the blog's packages can depend on it freely:
//
//   - Store (api.go) is all the app uses: Get, Scan and Txn over Ops, with
//     the sentinel errors (ErrNotFound, ErrConditionFailed, ...) and the
//     limits (MaxKeySize and its neighbours) every implementation shares.
//   - Client is the Store over the network. Writes go to the primary;
//     reads take a Consistency (WithConsistency). A Resolver names the store
//     nodes (the node implements it from membership).
//   - wire.go is the wire format below, shared with the server: routes,
//     headers, JSON shapes, and StatusOf/ErrorOf between sentinel errors and
//     HTTP statuses.
//
// The other side lives in subpackages, one per concern: pkg/store/boltdb
// is the engine (a bbolt file with a log of every committed transaction,
// also a Store), and pkg/store/server is the store role that serves it over
// this API and replicates it (docs/replication.md).
//
// # HTTP API
//
// Every response carries X-LSN (the LSN the answer reflects: the commit of a
// write, the state a read saw) and X-Store-Node (the node's name). Errors are
// JSON {"error":"..."} with 400 (bad request: bad JSON, empty or reserved
// bucket, empty key, unknown op), 404 (missing bucket or key, unknown route),
// 405 (wrong method), 409 (a condition failed), 413 (over a limit, see
// MaxKeySize and its neighbours) or 503 (store closing). A refused request
// changes nothing.
//
//	GET    /v1/kv/{bucket}/{key}   the raw value bytes
//	PUT    /v1/kv/{bucket}/{key}   body: the raw value; creates the bucket; {"lsn":N}
//	DELETE /v1/kv/{bucket}/{key}   deleting a missing key is not an error; {"lsn":N}
//	GET    /v1/scan/{bucket}?prefix=&start=&end=&limit=&reverse=
//	POST   /v1/txn                 an atomic transaction; {"lsn":N}
//	GET    /v1/status              the Status of the server
//
// Bucket and key are path-escaped; the key may contain "/". Buckets and keys
// are UTF-8. A scan selects the keys k with start <= k < end that begin
// with prefix (each bound optional), in key order or reversed, at most limit
// of them (default and maximum MaxScanLimit), and answers
//
//	{"lsn":7,"pairs":[{"key":"a","value":"text"},{"key":"b","value_b64":"AP8="}]}
//
// A transaction is
//
//	{"ops":[
//	  {"op":"check","bucket":"users","key":"ann","absent":true},
//	  {"op":"check","bucket":"meta","key":"count","value":"41"},
//	  {"op":"put","bucket":"users","key":"ann","value":"{\"name\":\"Ann\"}"},
//	  {"op":"put","bucket":"meta","key":"count","value":"42"},
//	  {"op":"put","bucket":"blobs","key":"x","value_b64":"AP8="},
//	  {"op":"delete","bucket":"sessions","key":"s1"}
//	]}
//
// Values travel as UTF-8 strings in "value", or as standard base64 in
// "value_b64" for bytes that are not UTF-8 (answers use "value" whenever the
// bytes are valid UTF-8). A put needs one of them; a check needs one of them
// or "absent":true; a delete takes neither. Checks are evaluated against the
// state before the transaction's own writes; if any fails the answer is 409
// and nothing is applied. Unknown fields are refused.
package store
