package app

import (
	"context"

	"github.com/scalestack/scalestack/pkg/store"
)

// localTrace makes an in-process store (a *boltdb.DB at stage 1) show up in
// the path headers like a remote one: after each call, if the store did not
// record itself in the request's trace, it is recorded as this node at the
// store's current LSN. A network client records the node that answered, so
// nothing is overwritten for it.
type localTrace struct {
	st   store.Store
	node string
}

type lsnSource interface{ LSN() uint64 }

func (l localTrace) record(ctx context.Context, lsn uint64) {
	tr := store.TraceFrom(ctx)
	if tr == nil {
		return
	}
	if node, _ := tr.Values(); node != "" && node != l.node {
		return
	}
	if lsn == 0 {
		if s, ok := l.st.(lsnSource); ok {
			lsn = s.LSN()
		}
	}
	tr.Record(l.node, lsn)
}

func (l localTrace) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	v, err := l.st.Get(ctx, bucket, key)
	l.record(ctx, 0)
	return v, err
}

func (l localTrace) Scan(ctx context.Context, bucket string, opts store.ScanOptions) ([]store.Pair, error) {
	p, err := l.st.Scan(ctx, bucket, opts)
	l.record(ctx, 0)
	return p, err
}

func (l localTrace) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := l.st.Txn(ctx, ops...)
	if err == nil {
		l.record(ctx, lsn)
	}
	return lsn, err
}
