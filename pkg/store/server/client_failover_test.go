package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// A replica that takes the connection and never answers (a SIGSTOPped
// process: its kernel still accepts) must not hold a session read for the
// caller's whole deadline: after a short try the read goes to the primary.
// Found by internal/faultrun: with a replica paused, the app's session
// reads that went to it waited out their 3 s window and answered 503.
func TestClientPassesOverSilentReplica(t *testing.T) {
	primary := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held <- conn // read nothing, answer nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})

	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: "primary", Addr: primary.Addr(), Primary: true}, {Name: "silent", Addr: ln.Addr().String()}},
		Timeout:  5 * time.Second,
	})
	defer c.Close()
	lsn, err := c.Txn(context.Background(), store.Put("b", "k", []byte("v")))
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []store.Consistency{store.Session, store.Eventual} {
		ctx, cancel := context.WithTimeout(store.WithConsistency(context.Background(), level, lsn), 3*time.Second)
		began := time.Now()
		got, err := c.Get(ctx, "b", "k")
		took := time.Since(began)
		cancel()
		if err != nil || string(got) != "v" {
			t.Fatalf("%s read with the only replica silent = %q, %v after %v; want \"v\" from the primary", level, got, err, took)
		}
		if took > 1500*time.Millisecond {
			t.Errorf("%s read with the only replica silent took %v of its 3s; want the primary asked after a short try", level, took)
		}
	}
}

// TestClientPassesOverSilentNodeForWrites: with no primary known (right
// after a failover), a write that a silent node (paused: its kernel accepts
// the connection, nobody answers) let time out does not send the next
// write there again; the other node answers and names the primary.
func TestClientPassesOverSilentNodeForWrites(t *testing.T) {
	primary := startServer(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 64)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held <- conn
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{{Name: "a-silent", Addr: ln.Addr().String()}, {Name: "b-primary", Addr: primary.Addr()}},
		Timeout:  5 * time.Second,
	})
	defer c.Close()
	failed := 0
	for i := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		_, err := c.Txn(ctx, store.Put("b", fmt.Sprint(i), []byte("v")))
		cancel()
		if err != nil {
			failed++
		}
	}
	if failed > 1 {
		t.Fatalf("%d of 8 writes failed with one silent node of two; want at most the first (the silent node passed over after it)", failed)
	}
}

// A call its caller gave up on (an app request whose user left) says
// nothing about the node it was waiting for: the node is not passed over
// as silent afterwards, and the next read goes to it as before.
func TestClientCallCanceledByItsCallerKeepsTheNode(t *testing.T) {
	entered := make(chan struct{}, 1)
	var mu sync.Mutex
	hits := map[string]int{}
	node := func(name string, stallFirst bool) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			first := hits[name] == 1
			mu.Unlock()
			if stallFirst && first {
				entered <- struct{}{}
				<-r.Context().Done()
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"not found"}`)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	primary, replica := node("primary", true), node("replica", false)
	c := store.NewClient(store.ClientConfig{
		Resolver: store.StaticResolver{
			{Name: "primary", Addr: strings.TrimPrefix(primary.URL, "http://"), Primary: true},
			{Name: "replica", Addr: strings.TrimPrefix(replica.URL, "http://")},
		},
		Timeout: 5 * time.Second,
	})
	defer c.Close()

	ctx, cancel := context.WithCancel(store.WithConsistency(context.Background(), store.Strong, 0))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "b", "k")
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get canceled by its caller = %v, want context.Canceled", err)
	}
	_, err := c.Get(store.WithConsistency(context.Background(), store.Strong, 0), "b", "k")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after the canceled one = %v, want ErrNotFound from the primary", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits["primary"] != 2 || hits["replica"] != 0 {
		t.Errorf("requests: primary %d, replica %d; want the next strong read sent to the primary again (2, 0)", hits["primary"], hits["replica"])
	}
}
