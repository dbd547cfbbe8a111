package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/internal/testcluster"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/node"
)

// Stage 10 end to end through real nodes: a store group and a service node
// for users, content, search and notifications, and a gateway app with
// --app-services remote that owns no store. A sign-up reaches the users
// service (and its user.signed_up the notifications node, which writes
// the welcome e-mail); a post created through the gateway is written by
// content, whose post.changed has the search node index it, so the
// gateway's search finds it; a view the gateway enqueues is added by a
// worker with --app-services remote over content. The answers name the service instances and
// the store groups they touched, and the gateway's /status has each
// client's breakers.
func TestGatewayOverServiceNodes(t *testing.T) {
	tc := testcluster.New(t)
	services := []string{"users", "content", "search", "notifications"}
	var specs []testcluster.Spec
	for _, s := range services {
		specs = append(specs, testcluster.Spec{Name: s + "-db", Roles: []string{node.RolePrimary}})
	}
	// Four NATS servers make one JetStream cluster: started together.
	tc.StartGroup(func(c *node.Config) { c.RoleConfig.Store.Group = strings.TrimSuffix(c.Name, "-db") }, specs...)
	for _, s := range services {
		tc.StartWith(s+"-1", []string{node.RoleService}, func(c *node.Config) {
			c.Service, c.ServiceDrain = s, 0
			c.RoleConfig.App.BcryptCost = bcrypt.MinCost
		})
	}
	gw := tc.StartWith("gw-1", []string{node.RoleApp}, func(c *node.Config) {
		c.RoleConfig.App.ServiceMode = app.ServicesRemote
		c.RoleConfig.App.Jobs = app.JobsQueue // views, the one job a gateway enqueues
		c.RoleConfig.App.RateLimit = "off"
	})
	tc.StartWith("worker-1", []string{node.RoleWorker}, func(c *node.Config) {
		c.RoleConfig.App.ServiceMode = app.ServicesRemote
	})
	base := "http://" + gw.Addr("app")
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	call := func(method, path string, body any) (*http.Response, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := web.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	// Sign up: the users service, and a session kept there.
	resp, body := call("POST", "/api/v1/signup", map[string]string{"handle": "ada", "email": "ada@example.com", "password": "correct horse battery"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("signup = %d %s, want 201", resp.StatusCode, body)
	}
	if sb := resp.Header.Get("X-Served-By"); !strings.Contains(sb, "users-1") {
		t.Errorf("signup X-Served-By = %q, want users-1 in it", sb)
	}
	if lsn := resp.Header.Get("X-Store-LSN"); !strings.Contains(lsn, "users=") {
		t.Errorf("signup X-Store-LSN = %q, want an LSN of group users (the rpc answer's, recorded in the gateway's trace)", lsn)
	}
	if resp, body := call("GET", "/api/v1/me", nil); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"ada"`) {
		t.Fatalf("me = %d %s, want ada: the session read back from the users service", resp.StatusCode, body)
	}

	// A post: the content service; search indexes it from its event.
	resp, body = call("POST", "/api/v1/posts", map[string]any{"title": "Raft in practice", "body": "Leases, epochs and the log.", "tags": []string{"raft"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create post = %d %s, want 201", resp.StatusCode, body)
	}
	var created struct {
		Post struct{ ID string } `json:"post"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.Post.ID == "" {
		t.Fatalf("create post answered %s (%v)", body, err)
	}
	if lsn := resp.Header.Get("X-Store-LSN"); !strings.Contains(lsn, "content=") {
		t.Errorf("create post X-Store-LSN = %q, want an LSN of group content", lsn)
	}
	testwait.RetryUntil(t, 30*time.Second, func() error {
		resp, body := call("GET", "/api/v1/search?q=raft", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), created.Post.ID) {
			return fmt.Errorf("search = %d %s, want post %s (indexed by search-1 from content's post.changed)", resp.StatusCode, body, created.Post.ID)
		}
		if sb := resp.Header.Get("X-Served-By"); !strings.Contains(sb, "search-1") {
			return fmt.Errorf("search X-Served-By = %q, want search-1 in it", sb)
		}
		return nil
	})

	// A view: the gateway enqueues it, the worker adds it over the
	// content service.
	testwait.RetryUntil(t, 30*time.Second, func() error {
		resp, body := call("GET", "/api/v1/posts/"+created.Post.ID, nil)
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"views":0`) {
			return fmt.Errorf("post = %d %s, want a view counted by worker-1", resp.StatusCode, body)
		}
		return nil
	})

	// The welcome e-mail: user.signed_up, consumed by notifications-1.
	outbox := filepath.Join(tc.Node("notifications-1").Config().DataDir, "outbox")
	testwait.RetryUntil(t, 30*time.Second, func() error {
		files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "ada@example.com") {
				return nil
			}
		}
		return fmt.Errorf("no welcome e-mail to ada in %s (%d files)", outbox, len(files))
	})

	// The users node's sessions read through a cache tier of the users
	// group (no cache nodes here: every read is a bypass to the store).
	if st := tc.Node("users-1").Status().Sections["service-cache"]; st == nil {
		t.Errorf("users-1 /status has no service-cache section: %v", tc.Node("users-1").Status().Sections)
	}

	// The gateway's /status: a client per service it called, with its
	// instances and breakers.
	st, err := json.Marshal(gw.Status().Sections["services"])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"service":"users"`, `"service":"content"`, `"name":"content-1"`, `"state":"closed"`} {
		if !strings.Contains(string(st), want) {
			t.Errorf("gw-1 /status services lacks %s: %s", want, st)
		}
	}
	st, _ = json.Marshal(tc.Node("worker-1").Status().Sections["services"])
	if !strings.Contains(string(st), `"service":"content"`) {
		t.Errorf("worker-1 /status services = %s, want its content client", st)
	}
}

// With the services' packages built in, --service takes every service of
// issue 18.
func TestEveryServiceAccepted(t *testing.T) {
	for _, s := range []string{"users", "content", "search", "notifications", "payments"} {
		cfg := node.DefaultConfig()
		cfg.RoleNames, cfg.Service, cfg.DataDir = []string{node.RoleService}, s, t.TempDir()
		if _, err := node.New(cfg); err != nil {
			t.Errorf("--roles service --service %s: %v", s, err)
		}
	}
}
