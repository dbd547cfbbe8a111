package svc

import (
	"context"

	"github.com/scalestack/scalestack/pkg/store"
)

// A caller's outbox: records of its own that must commit in the same store
// transaction as a service's write, or not at all.
//
// The app keeps the jobs a write causes (the welcome e-mail of a sign-up,
// the indexing of a post) in an outbox in the store, and publishes them to
// the queue after the commit (pkg/app/outbox.go). For that to hold when a
// request fails after its write committed (the store's answer was lost:
// outcome unknown), the job must be in the same transaction as the write.
// A job names what the write makes (the new user's id, the post's id), and
// that exists only inside the service until it commits; so, rather than
// the caller choosing ids for the service or a store decorator guessing
// which transaction is the one, the service hands the value it is about to
// write to the caller's outbox and adds what comes back to its transaction:
//
//	ops = append(ops, svc.Outbox(ctx, user)...)
//
// A service calls Outbox in each write a caller may attach jobs to, once per
// attempt (a compare-and-set retry builds its transaction again), just
// before the transaction, with the value as it will be stored.

type outboxKey struct{}

// WithOutbox returns ctx carrying ops, which a service calls with the value
// of type T it is about to write; the operations ops returns are added to
// that write's transaction. The outbox applies only to writes of a T, so a
// context meant for a new post adds nothing to, say, a comment's write made
// with it. Give the context to the one service call whose write causes the
// records: every write of a T made with it calls ops.
func WithOutbox[T any](ctx context.Context, ops func(T) []store.Op) context.Context {
	return context.WithValue(ctx, outboxKey{}, ops)
}

// Outbox returns the operations that the outbox of ctx adds to the
// transaction writing v, or nil when ctx carries no outbox for a T.
func Outbox[T any](ctx context.Context, v T) []store.Op {
	ops, ok := ctx.Value(outboxKey{}).(func(T) []store.Op)
	if !ok {
		return nil
	}
	return ops(v)
}
