//go:build linux

// The end-to-end test of stage 10 (issue 18): the five services as nodes,
// each over its own store group, behind gateway apps with
// --app-services=remote.

package launch_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/loadgen"
)

// TestStage10 starts the microservices stage, checks that each store
// group has its primary and each service answers through the gateway,
// then deploys content under load (no failed request), adds a search
// instance that takes traffic, and removes it; then, on the same stack,
// kills the content group's primary under load, every search instance,
// and payments in the middle of a charge.
func TestStage10(t *testing.T) {
	s := startStack(t, 10, "127.0.32.2")
	st := s.state()
	if n := len(st.Nodes); n != 26 {
		t.Fatalf("stage 10 has %d nodes (%s), want 26", n, s.nodeNames())
	}
	if st.URL != "http://127.0.32.60:8000" {
		t.Errorf("URL = %s, want edge-1's, http://127.0.32.60:8000", st.URL)
	}
	if out := s.out.String(); !strings.Contains(out, "store nodes ready 15/15") || !strings.Contains(out, "service instances ready 5/5") {
		t.Errorf("node up did not tell the start by phase:\n%s", out)
	}

	// One primary per group, named with its group.
	testwait.RetryUntil(t, 10*time.Second, func() error {
		ps := s.run("ps")
		for _, svc := range launch.Services() {
			if !regexp.MustCompile(svc + `-db-\d is primary of ` + svc + ` \(epoch \d+\)`).MatchString(ps) {
				return fmt.Errorf("ps names no primary of %s:\n%s", svc, ps)
			}
		}
		return nil
	})

	// The blog works through the gateways: a user signs up (users), posts
	// (content), and the page lists every service instance it touched.
	u := newBlogClient(t, st.URL)
	u.signup("stage10_ada")
	id := u.post("Before the deploy")
	resp, err := u.get("/api/v1/posts/" + id)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET the post: %s %v", status(resp), err)
	}
	if by := header(resp, "X-Served-By"); !strings.Contains(by, "content-1") {
		t.Errorf("X-Served-By = %q, want content-1 among the instances the request touched", by)
	}

	// Deploy content under load: content has one instance, so the deploy
	// adds content-2 for its duration; no request fails.
	loadDone := make(chan loadgen.Summary, 1)
	go func() {
		loadDone <- s.load("--duration", "15s", "--rate", "20", "--users", "4", "--mix", "browse=60,read=30,post=10")
	}()
	time.Sleep(2 * time.Second) // the deploy lands in the middle of the load
	out := s.run("deploy", "content")
	for _, want := range []string{"content-2 added for the deploy", "content-1: stopping", "content-1: ready again", "content-2, added for the deploy, drained and removed", "deployed content: content-1 restarted in"} {
		if !strings.Contains(out, want) {
			t.Errorf("node deploy content said\n%s\nwant %q", out, want)
		}
	}
	sum := <-loadDone
	t.Logf("load during node deploy content: %d sent, %d errors, %d writes acknowledged, %d lost", sum.Sent, sum.Errors, sum.Writes.Acknowledged, sum.Writes.Lost)
	if sum.Errors != 0 || sum.Writes.Lost != 0 {
		t.Errorf("load during the deploy: %d errors %v, %d lost; want none", sum.Errors, sum.ErrorKinds, sum.Writes.Lost)
	}
	if n := s.node("content-1"); n.Starts != 2 {
		t.Errorf("content-1 started %d times, want 2 (once by up, once by the deploy)", n.Starts)
	}
	u.wantTitle(id, "Before the deploy")

	// A search instance added takes traffic within seconds.
	if out := s.run("add", "service", "--service", "search"); !strings.Contains(out, "added search-2") {
		t.Fatalf("node add service --service search said %q, want search-2", out)
	}
	testwait.RetryUntil(t, 10*time.Second, func() error {
		for range 10 {
			if resp, err := u.get("/api/v1/search?q=deploy"); err == nil && strings.Contains(header(resp, "X-Served-By"), "search-2") {
				return nil
			}
		}
		return fmt.Errorf("search-2 serves no search")
	})
	if out := s.run("rm", "search-2"); !strings.Contains(out, "removed search-2") {
		t.Errorf("node rm search-2 said %q", out)
	}
	if out, err := s.runErr("deploy", "billing"); err == nil || !strings.Contains(out, `no service "billing"`) {
		t.Errorf("node deploy billing = %v:\n%s\nwant a refusal naming the services", err, out)
	}

	// The faults of issue 18's item 6 (e2e_stage10_faults_test.go), in
	// turn on this stack.
	t.Run("content primary killed", func(t *testing.T) { contentPrimaryKilled(t, s) })
	t.Run("search killed", func(t *testing.T) { searchKilled(t, s) })
	t.Run("payments killed mid-charge", func(t *testing.T) { paymentsKilledMidCharge(t, s) })
	s.interrupt()
}
