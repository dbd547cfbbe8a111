package node_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/node"
)

// A request travels edge → lb → app → store, every hop found through
// membership, and the response names each hop; the second anonymous load of
// a public page is an edge hit, and the lb spreads requests over both apps.
func TestRequestPathThroughTheStack(t *testing.T) {
	tc := testcluster.New(t)
	natsOff := func(c *node.Config) { c.NATS = node.NATSOff }
	tc.StartWith("db-1", []string{node.RolePrimary}, natsOff)
	tc.StartWith("app-1", []string{node.RoleApp}, natsOff)
	tc.StartWith("app-2", []string{node.RoleApp}, natsOff)
	lb := tc.StartWith("lb-1", []string{node.RoleLB}, natsOff)
	edge := tc.StartWith("edge-1", []string{node.RoleEdge}, natsOff)
	tc.WaitForMembers(5, 10*time.Second)

	get := func(base, path string) *http.Response {
		t.Helper()
		resp, err := http.Get("http://" + base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	// The lb takes an app into rotation after its health checks pass.
	served := map[string]int{}
	testwait.RetryUntil(t, 15*time.Second, func() error {
		resp := get(lb.Addr("lb"), "/")
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET / through the lb = %d", resp.StatusCode)
		}
		served[resp.Header.Get("X-Served-By")]++
		if len(served) < 2 {
			return fmt.Errorf("only %v answered so far", served)
		}
		return nil
	})

	var first *http.Response
	testwait.RetryUntil(t, 15*time.Second, func() error {
		first = get(edge.Addr("edge"), "/")
		if first.StatusCode != 200 {
			return fmt.Errorf("GET / through the edge = %d", first.StatusCode)
		}
		return nil
	})
	second := get(edge.Addr("edge"), "/")
	for _, h := range []string{"X-Served-By", "X-Store", "X-Edge"} {
		if second.Header.Get(h) == "" {
			t.Errorf("response through the edge has no %s header: %v", h, second.Header)
		}
	}
	if got := first.Header.Get("X-LB"); got != "lb-1" {
		t.Errorf("X-LB = %q, want lb-1", got)
	}
	if got := second.Header.Get("X-Cache"); got != "HIT" {
		t.Errorf("second anonymous GET / through the edge: X-Cache = %q, want HIT", got)
	}
}
