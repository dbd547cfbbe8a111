// Package store is scalestack's database: a bbolt file per node with buckets,
// ordered scans and atomic transactions, a log of every committed
// transaction, and the store role that serves it over HTTP/JSON.
//
// The pieces, from the bottom:
//
//   - DB is the local database. Writes are queued to one committer goroutine
//     that groups concurrent transactions into a single bbolt commit (one
//     fsync); each transaction still gets its own log sequence number (LSN),
//     and its log Entry is written in the same bbolt transaction as its data,
//     so data and log never disagree. A condition that fails fails only its
//     own transaction. bbolt syncs on commit, so an acknowledged transaction
//     survives kill -9.
//   - Server is the store role: a DB at DataDir/store.db behind the HTTP API
//     below, with metrics and a /status part.
//   - Client is the Store over the network, used by the app. Writes go to the
//     primary; reads take a Consistency (WithConsistency), served by the
//     primary until replication exists.
//
// Both *DB and *Client implement Store (api.go), which is all the app uses.
//
// # Log and epochs
//
// The bucket "_log" maps each LSN (8 bytes, big endian) to an Entry encoded
// by EncodeEntry: the LSN, the epoch of the primary that wrote it and the
// puts and deletes in order, protected by a CRC-32C. The bucket "_meta" holds
// the last LSN and the epoch. Only the last Options.LogRetention entries are
// kept, trimmed in the same commits that add entries. DB.ReadLog reads
// entries from an LSN on; replication will stream from it. Bucket names
// starting with "_" are reserved.
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
