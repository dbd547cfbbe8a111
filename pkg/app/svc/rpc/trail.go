package rpc

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Trail collects the service instances that answered the calls made with a
// context, and those they called in turn, for a response's X-Served-By:
// the gateway shows every instance a page touched (issue 18, item 7). A
// server answers its own name followed by its handler's trail, so a call
// that crossed several services reports all of them. Safe for concurrent
// use (a page's calls may run in parallel).
type Trail struct {
	mu   sync.Mutex
	hops []string
}

type trailKey struct{}

// WithTrail returns ctx with a new Trail that every call made with it
// adds to.
func WithTrail(ctx context.Context) (context.Context, *Trail) {
	t := &Trail{}
	return context.WithValue(ctx, trailKey{}, t), t
}

func trailFrom(ctx context.Context) *Trail {
	t, _ := ctx.Value(trailKey{}).(*Trail)
	return t
}

// add records the instances of an answer's X-Served-By, each once, in the
// order they were first seen.
func (t *Trail) add(servedBy string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name := range strings.SplitSeq(servedBy, ",") {
		if name = strings.TrimSpace(name); name != "" && !slices.Contains(t.hops, name) {
			t.hops = append(t.hops, name)
		}
	}
}

// Hops returns the instances seen so far, in the order first seen.
func (t *Trail) Hops() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.hops)
}

// String is the trail as an X-Served-By value: the names joined by ", ".
func (t *Trail) String() string { return strings.Join(t.Hops(), ", ") }
