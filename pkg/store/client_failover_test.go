package store_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// A client that learned a primary which then died must not keep sending
// to it: a refused connection sent nothing, so the write goes to another
// listed node, which names the live primary (here it is that node).
// Found by internal/e2e's kill -9 test: with a static list, every write
// after the kill failed at once, forever.
func TestClientLeavesDeadPrimary(t *testing.T) {
	live := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused

	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: "dead", Addr: dead, Primary: true}, {Name: "live", Addr: live.Addr()}},
		Timeout:  5 * time.Second,
	})
	defer c.Close()
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.Txn(ctx, store.Put("b", "k", []byte{byte(i)})); err != nil {
			t.Fatalf("write %d with the marked primary dead: %v, want it sent to the live node", i, err)
		}
	}
	got, err := c.Get(store.WithConsistency(ctx, store.Strong, 0), "b", "k")
	if err != nil || len(got) != 1 || got[0] != 2 {
		t.Fatalf("strong read = %v, %v; want [2]", got, err)
	}
}
