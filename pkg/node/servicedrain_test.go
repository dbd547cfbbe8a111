package node_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
	"github.com/scalestack/scalestack/pkg/node"
)

// instanceNames lists the names of a service's instances as a node sees
// them.
func instanceNames(n *node.Node, service string) []string {
	var out []string
	for _, in := range n.ServiceInstances(service) {
		out = append(out, in.Name)
	}
	return out
}

// Two payments instances, found by membership; one of them stops under a
// steady stream of calls that are never retried. It announces draining,
// every node's instance list drops it while it still answers, and it
// closes after its drain delay: no call fails.
func TestServiceDrainsBeforeClosing(t *testing.T) {
	tc := testcluster.New(t)
	tc.StartWith("pay-db", []string{node.RolePrimary}, func(c *node.Config) {
		c.NATS, c.RoleConfig.Store.Group = node.NATSOff, "payments"
	})
	service := func(c *node.Config) { c.Service, c.ServiceDrain = payments.Name, 3*time.Second }
	pay1 := tc.StartWith("pay-1", []string{node.RoleService}, service)
	pay2 := tc.StartWith("pay-2", []string{node.RoleService}, service)
	db := tc.Node("pay-db")

	// Discovery: both instances, by name, at their service ports.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		list := db.ServiceInstances(payments.Name)
		want := []rpc.Instance{{Name: "pay-1", Addr: pay1.Addr("service")}, {Name: "pay-2", Addr: pay2.Addr("service")}}
		if !slices.Equal(list, want) {
			return fmt.Errorf("payments instances seen by pay-db = %v, want %v", list, want)
		}
		return nil
	})
	if got := instanceNames(db, "search"); len(got) != 0 {
		t.Errorf("search instances = %v, want none", got)
	}

	client, err := rpc.New(rpc.Config{
		Service:   payments.Name,
		Instances: func() []rpc.Instance { return db.ServiceInstances(payments.Name) },
		Codes:     payments.Codes,
		Retries:   -1, // the drain alone must keep every call whole
		Timeout:   10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		calls    atomic.Int64
		mu       sync.Mutex
		failures []error
		served   = map[string]int{}
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, trail := rpc.WithTrail(context.Background())
				_, err := rpc.Call(ctx, client, payments.TipsForMethod, payments.TipsForRequest{AuthorID: "1m9970000000b"})
				calls.Add(1)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					served[trail.String()]++
				}
				mu.Unlock()
			}
		}()
	}
	// Both instances take calls before the stop.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if served["pay-1"] == 0 || served["pay-2"] == 0 {
			return fmt.Errorf("calls served = %v, want some by each instance", served)
		}
		return nil
	})

	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- pay1.Close() }()
	// Membership drops pay-1 while it still answers: its drain delay.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		if got := instanceNames(db, payments.Name); !slices.Equal(got, []string{"pay-2"}) {
			return fmt.Errorf("payments instances = %v, want pay-2 alone", got)
		}
		return nil
	})
	select {
	case err := <-closed:
		t.Fatalf("pay-1 closed (%v) before its drain delay was over", err)
	default:
	}
	code, body := post(t, pay1.Addr("service"), payments.TipsForMethod.Name, "", payments.TipsForRequest{AuthorID: "1m9970000000b"})
	if code != http.StatusOK {
		t.Errorf("a call to pay-1 while it drains = %d %s, want 200: it serves until its port closes", code, body)
	}
	if err := <-closed; err != nil {
		t.Errorf("close pay-1: %v", err)
	}
	// A lower bound, not a race: Close sleeps the delay before it closes
	// the port (on loopback gossip is faster than any delay; across
	// machines the delay is what lets every caller hear of the drain).
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("pay-1 closed after %v, want at least its drain delay (3s)", took)
	}
	mu.Lock()
	before := served["pay-2"]
	mu.Unlock()
	// Calls go on, to pay-2 alone.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if served["pay-2"] < before+10 {
			return fmt.Errorf("pay-2 served %d calls since pay-1 closed, want 10", served["pay-2"]-before)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed while pay-1 drained and closed, want none; first: %v", len(failures), calls.Load(), failures[0])
	}
	for trail := range served {
		if strings.Contains(trail, ",") {
			t.Errorf("a call was served by %q, want one instance per call", trail)
		}
	}
}
