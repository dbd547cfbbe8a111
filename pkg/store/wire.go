package store

import (
	"bytes"
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

// Header names carried by every response.
const (
	HeaderLSN  = "X-LSN"
	HeaderNode = "X-Store-Node"
)

// wireOp is one operation of POST /v1/txn. A value travels as a UTF-8 string
// in Value when it is valid UTF-8 (readable with curl), else as base64 in
// ValueB64; exactly one of them is set for put and for a check without
// Absent.
type wireOp struct {
	Op       OpKind  `json:"op"`
	Bucket   string  `json:"bucket"`
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
	Absent   bool    `json:"absent,omitempty"`
}

type wireTxn struct {
	Ops []wireOp `json:"ops"`
}

// wirePair is one pair of a scan answer; like wireOp, exactly one of Value
// and ValueB64 is set.
type wirePair struct {
	Key      string  `json:"key"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

type wireScan struct {
	LSN   uint64     `json:"lsn"`
	Pairs []wirePair `json:"pairs"`
}

// wireLSN is the answer to a write.
type wireLSN struct {
	LSN uint64 `json:"lsn"`
}

type wireError struct {
	Error string `json:"error"`
}

// encodeValue picks the exact representation of v.
func encodeValue(v []byte) (text, b64 *string) {
	if utf8.Valid(v) {
		s := string(v)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(v)
	return nil, &s
}

// decodeValue is the inverse of encodeValue; set reports whether either was given.
func decodeValue(text, b64 *string) (v []byte, set bool, err error) {
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

func toWireOps(ops []Op) wireTxn {
	t := wireTxn{Ops: make([]wireOp, len(ops))}
	for i, op := range ops {
		w := wireOp{Op: op.Kind, Bucket: op.Bucket, Key: op.Key, Absent: op.Absent}
		if op.Kind == OpPut || (op.Kind == OpCheck && !op.Absent) {
			w.Value, w.ValueB64 = encodeValue(op.Value)
		}
		t.Ops[i] = w
	}
	return t
}

// decodeTxn parses a POST /v1/txn body into ops. Every error wraps
// ErrInvalid; the limits are checked later, by the DB.
func decodeTxn(r io.Reader) ([]Op, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var t wireTxn
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
		v, set, err := decodeValue(w.Value, w.ValueB64)
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
