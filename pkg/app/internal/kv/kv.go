// Package kv holds the few helpers every blog service needs on top of
// store.Store: JSON values, scans that treat a missing bucket as empty, and
// offset pagination over an ordered key range walked in bounded chunks.
package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/scalestack/scalestack/pkg/store"
)

// Chunk is how many keys one scan call asks for while paging. It stays well
// under any store's maximum scan size so a deep page never needs one huge reply.
const Chunk = 200

// GetJSON reads bucket/key and decodes it into v.
func GetJSON(ctx context.Context, st store.Store, bucket, key string, v any) ([]byte, error) {
	raw, err := st.Get(ctx, bucket, key)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return raw, nil
}

// MustJSON encodes v; the values are the services' own structs, so an error
// is a programming mistake.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("kv: encode %T: %v", v, err))
	}
	return b
}

// Scan is store.Scan with a missing bucket read as empty.
func Scan(ctx context.Context, st store.Store, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	pairs, err := st.Scan(ctx, bucket, opts)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return pairs, err
}

// Page returns up to limit pairs of bucket whose keys start with prefix,
// skipping the first offset, walking newest-first when reverse is set. more
// reports whether at least one pair follows the page.
func Page(ctx context.Context, st store.Store, bucket, prefix string, offset, limit int, reverse bool) (page []store.Pair, more bool, err error) {
	opts := store.ScanOptions{Prefix: prefix, Reverse: reverse}
	if prefix != "" {
		opts.Start, opts.End = prefix, prefixEnd(prefix)
	}
	want := offset + limit + 1
	seen := 0
	for {
		opts.Limit = Chunk
		pairs, err := Scan(ctx, st, bucket, opts)
		if err != nil {
			return nil, false, err
		}
		for _, p := range pairs {
			if seen >= offset && len(page) < limit {
				page = append(page, p)
			}
			seen++
			if seen >= want {
				return page, true, nil
			}
		}
		if len(pairs) < Chunk {
			return page, false, nil
		}
		last := pairs[len(pairs)-1].Key
		if reverse {
			opts.End = last
		} else {
			opts.Start = last + "\x00"
		}
	}
}

// All returns every pair under prefix, in key order, walking in chunks.
func All(ctx context.Context, st store.Store, bucket, prefix string) ([]store.Pair, error) {
	var out []store.Pair
	opts := store.ScanOptions{Prefix: prefix}
	if prefix != "" {
		opts.Start, opts.End = prefix, prefixEnd(prefix)
	}
	for {
		opts.Limit = Chunk
		pairs, err := Scan(ctx, st, bucket, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, pairs...)
		if len(pairs) < Chunk {
			return out, nil
		}
		opts.Start = pairs[len(pairs)-1].Key + "\x00"
	}
}

// Count returns how many keys start with prefix.
func Count(ctx context.Context, st store.Store, bucket, prefix string) (int, error) {
	pairs, err := All(ctx, st, bucket, prefix)
	return len(pairs), err
}

// prefixEnd returns the smallest key greater than every key with prefix.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// Join makes a composite key; "/" never occurs in ids, handles or tags.
func Join(parts ...string) string { return strings.Join(parts, "/") }
