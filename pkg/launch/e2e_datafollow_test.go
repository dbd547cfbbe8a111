//go:build linux

package launch_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/launch"
)

// Data follows you between stages (issue 17): stacks of different stages
// run one after another on one --dir, and every acknowledged post is still
// there. Addresses 127.0.40.x to 127.0.42.x.

// TestDataFollowsStage1ToStage2: stage 1's store node is node-1, stage 2's
// is db-1; the post written at stage 1 is served at stage 2.
func TestDataFollowsStage1ToStage2(t *testing.T) {
	dir := t.TempDir()
	s := startStackIn(t, dir, 1, "127.0.40.2")
	b := newBlogClient(t, s.state().URL)
	b.signup("follow_dana")
	id := b.post("Written at stage 1")
	s.interrupt()

	s = startStackIn(t, dir, 2, "127.0.40.2")
	if out := s.out.String(); !strings.Contains(out, "db-1 starts from node-1's data") {
		t.Errorf("node up --stage 2 does not say where db-1's data comes from:\n%s", out)
	}
	newBlogClient(t, s.state().URL).wantTitle(id, "Written at stage 1")
	s.interrupt()
}

// TestDataFollowsAFailover: at stage 4 db-1 dies and replica-1 or -2 takes
// writes at a newer epoch; stage 2 on the same directory starts db-1 from
// the new primary's data, so both posts are there. Back at stage 4, the
// post written at stage 2 (on db-1 alone) survives the group's election.
func TestDataFollowsAFailover(t *testing.T) {
	dir := t.TempDir()
	s := startStackIn(t, dir, 4, "127.0.41.2")
	b := newBlogClient(t, s.state().URL)
	b.signup("follow_erin")
	before := b.post("Before the failover")
	s.run("kill", "db-1")
	s.wantState("db-1", launch.StateDead)
	var after string
	testwait.RetryUntil(t, 20*time.Second, func() error {
		resp, body, err := b.do(http.MethodPost, "/api/v1/posts", map[string]any{"title": "After the failover", "body": "x", "published": true})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST after killing db-1: %s %s", resp.Status, body)
		}
		var out struct{ Post struct{ ID string } }
		if err := json.Unmarshal(body, &out); err != nil || out.Post.ID == "" {
			t.Fatalf("POST answered %s, want a post id", body)
		}
		after = out.Post.ID
		return nil
	})
	s.interrupt()

	s = startStackIn(t, dir, 2, "127.0.41.2")
	if out := s.out.String(); !strings.Contains(out, "db-1 starts from replica-") || !strings.Contains(out, "is kept in") {
		t.Errorf("node up --stage 2 does not say that db-1 starts from the new primary's data:\n%s", out)
	}
	if kept, _ := filepath.Glob(filepath.Join(dir, "data", "db-1.before-*", "store.db")); len(kept) != 1 {
		t.Errorf("db-1's older store file kept aside: %v, want one", kept)
	}
	anon := newBlogClient(t, s.state().URL)
	anon.wantTitle(before, "Before the failover")
	anon.wantTitle(after, "After the failover")
	b = newBlogClient(t, s.state().URL)
	b.signup("follow_frank")
	stage2 := b.post("Written at stage 2")
	s.interrupt()

	// Only db-1 has stage 2's post: the replicas, a majority, could elect
	// one of them without it, so node up gives it to one replica too.
	s = startStackIn(t, dir, 4, "127.0.41.2")
	if out := s.out.String(); !strings.Contains(out, "replica-1 starts from db-1's data") {
		t.Errorf("node up --stage 4 after stage 2 does not carry db-1's data to a replica:\n%s", out)
	}
	anon = newBlogClient(t, s.state().URL)
	for id, title := range map[string]string{before: "Before the failover", after: "After the failover", stage2: "Written at stage 2"} {
		anon.wantTitle(id, title)
	}
	s.interrupt()
}

// TestDataFollowsIntoStage10: a user signs up and posts at stage 2; at
// stage 10 every service's store group begins as a copy of db-1's store,
// so the post reads through the gateways (content) and the user logs in
// (users; stage 2 kept the session in app-1's memory, which stage 10 does
// not have).
func TestDataFollowsIntoStage10(t *testing.T) {
	dir := t.TempDir()
	s := startStackIn(t, dir, 2, "127.0.42.2")
	b := newBlogClient(t, s.state().URL)
	b.handle = "follow_grace"
	b.signup(b.handle)
	id := b.post("Written at stage 2")
	s.interrupt()

	s = startStackIn(t, dir, 10, "127.0.42.2")
	out := s.out.String()
	for _, svc := range launch.Services() {
		if want := fmt.Sprintf("%[1]s-db-1 and %[1]s-db-2 start from db-1's data", svc); !strings.Contains(out, want) {
			t.Errorf("node up --stage 10 does not say that the %s group begins as a copy of db-1's data (%q):\n%s", svc, want, out)
		}
	}
	anon := newBlogClient(t, s.state().URL)
	anon.wantTitle(id, "Written at stage 2")

	login := newBlogClient(t, s.state().URL)
	login.handle = b.handle
	login.send(http.MethodPost, "/api/v1/login", map[string]string{"handle": b.handle, "password": "correct horse"}, http.StatusOK)
	login.wantMe("after logging in at stage 10")
	s.interrupt()
}
