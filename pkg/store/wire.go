package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"
)

// The JSON shapes of the HTTP API, shared by Server and Client. The package
// doc and docs/store.md describe them for curl users.

// Routes of the HTTP API (see the package doc for the wire format).
const (
	PathKV     = "/v1/kv/"   // + {bucket}/{key}
	PathScan   = "/v1/scan/" // + {bucket}
	PathTxn    = "/v1/txn"
	PathStatus = "/v1/status"
)

// Headers of replication and of the client's routing.
const (
	// HeaderPrimary names the primary the answering node knows: "name=host:port".
	HeaderPrimary = "X-Store-Primary"
	// HeaderEpoch is the answering node's epoch; a client sends the highest
	// it has seen, and a node with an older one refuses the write (it is a
	// deposed primary).
	HeaderEpoch = "X-Store-Epoch"
	// HeaderMinLSN, on a read, asks for a node that has applied at least
	// this LSN (session consistency).
	HeaderMinLSN = "X-Store-Min-LSN"
	// HeaderConsistency, on a read, is "strong" when only the primary may answer.
	HeaderConsistency = "X-Store-Consistency"
)

// Header names carried by every response.
const (
	HeaderLSN  = "X-LSN"
	HeaderNode = "X-Store-Node"
)

// WireOp is one operation of POST /v1/txn. A value travels as a UTF-8 string
// in Value when it is valid UTF-8 (readable with curl), else as base64 in
// ValueB64; exactly one of them is set for put and for a check without
// Absent.
type WireOp struct {
	Op       OpKind  `json:"op"`
	Bucket   string  `json:"bucket"`
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
	Absent   bool    `json:"absent,omitempty"`
}

type WireTxn struct {
	Ops []WireOp `json:"ops"`
}

// WirePair is one pair of a scan answer; like WireOp, exactly one of Value
// and ValueB64 is set.
type WirePair struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

type WireScan struct {
	LSN   uint64     `json:"lsn"`
	Pairs []WirePair `json:"pairs"`
}

// WireLSN is the answer to a write.
type WireLSN struct {
	LSN uint64 `json:"lsn"`
}

type WireError struct {
	Error string `json:"error"`
}

// EncodeValue picks the exact representation of v.
func EncodeValue(v []byte) (text, b64 *string) {
	if utf8.Valid(v) {
		s := string(v)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(v)
	return nil, &s
}

// DecodeValue is the inverse of EncodeValue; set reports whether either was given.
func DecodeValue(text, b64 *string) (v []byte, set bool, err error) {
	switch {
	case text != nil && b64 != nil:
		return nil, true, errors.New("both value and value_b64 given")
	case text != nil:
		return []byte(*text), true, nil
	case b64 != nil:
		v, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, true, fmt.Errorf("value_b64: %w", err)
		}
		return v, true, nil
	}
	return nil, false, nil
}

func toWireOps(ops []Op) WireTxn {
	t := WireTxn{Ops: make([]WireOp, len(ops))}
	for i, op := range ops {
		w := WireOp{Op: op.Kind, Bucket: op.Bucket, Key: op.Key, Absent: op.Absent}
		if op.Kind == OpPut || (op.Kind == OpCheck && !op.Absent) {
			w.Value, w.ValueB64 = EncodeValue(op.Value)
		}
		t.Ops[i] = w
	}
	return t
}

// DecodeTxn parses a POST /v1/txn body into ops. Every error wraps
// ErrInvalid; the limits are checked later, by the DB.
func DecodeTxn(r io.Reader) ([]Op, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var t WireTxn
	if err := dec.Decode(&t); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("body over MaxRequestBytes %d: %w", mbe.Limit, ErrTooLarge)
		}
		return nil, fmt.Errorf("bad JSON: %v: %w", err, ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("bad JSON: data after the object: %w", ErrInvalid)
	}
	ops := make([]Op, len(t.Ops))
	for i, w := range t.Ops {
		op := Op{Kind: w.Op, Bucket: w.Bucket, Key: w.Key, Absent: w.Absent}
		v, set, err := DecodeValue(w.Value, w.ValueB64)
		if err != nil {
			return nil, fmt.Errorf("op %d: %v: %w", i, err, ErrInvalid)
		}
		switch w.Op {
		case OpPut:
			if w.Absent {
				return nil, fmt.Errorf("op %d: put takes no absent: %w", i, ErrInvalid)
			}
			if !set {
				return nil, fmt.Errorf("op %d: put needs value or value_b64: %w", i, ErrInvalid)
			}
		case OpDelete:
			if set || w.Absent {
				return nil, fmt.Errorf("op %d: delete takes no value or absent: %w", i, ErrInvalid)
			}
		case OpCheck:
			if set == w.Absent {
				return nil, fmt.Errorf("op %d: check needs exactly one of value, value_b64, absent: %w", i, ErrInvalid)
			}
		default:
			return nil, fmt.Errorf("op %d: unknown op %q (want put, delete or check): %w", i, w.Op, ErrInvalid)
		}
		if op.Kind == OpPut && v == nil {
			v = []byte{}
		}
		op.Value = v
		ops[i] = op
	}
	return ops, nil
}

// jsonBody marshals v for a request body.
func jsonBody(v any) (*bytes.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// StatusOf maps the sentinel errors to HTTP statuses; ErrorOf is its
// inverse.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConditionFailed):
		return http.StatusConflict
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrCompacted):
		return http.StatusGone
	case errors.Is(err, ErrNotPrimary):
		// Nothing was applied: the client may send it to the primary.
		return http.StatusMisdirectedRequest
	case errors.Is(err, ErrBehind):
		return http.StatusTooEarly
	case errors.Is(err, ErrStaleEpoch):
		return http.StatusConflict
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable), errors.Is(err, ErrSyncTimeout),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
