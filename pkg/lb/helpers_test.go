package lb_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/lb"
)

// appNode is a real HTTP backend standing in for an app node. It counts the
// requests it serves, the POSTs it applies by id, and the health checks it
// answers.
type appNode struct {
	name   string
	srv    *httptest.Server
	hits   atomic.Int64
	checks atomic.Int64
	ready  atomic.Bool
	// status, when not zero, is the status of every non-health response.
	status atomic.Int32

	mu      sync.Mutex
	applied map[string]int
	lastReq *http.Request
}

// startApp starts an appNode on a free loopback port, or on addr when given.
func startApp(tb testing.TB, name string, addr ...string) *appNode {
	tb.Helper()
	return startAppWith(tb, name, nil, addr...)
}

// startAppWith is startApp with a chance to change the server before it
// starts (its handler, timeouts or hooks).
func startAppWith(tb testing.TB, name string, setup func(a *appNode, s *http.Server), addr ...string) *appNode {
	tb.Helper()
	a := &appNode{name: name, applied: map[string]int{}}
	a.ready.Store(true)
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	if setup != nil {
		setup(a, a.srv.Config)
	}
	if len(addr) > 0 {
		a.srv.Listener.Close()
		ln, err := listenRetry(addr[0])
		if err != nil {
			tb.Fatalf("listen %s: %v", addr[0], err)
		}
		a.srv.Listener = ln
	}
	a.srv.Start()
	tb.Cleanup(a.srv.Close)
	return a
}

// listenRetry listens on addr, waiting briefly for a just-closed port.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 50; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

func (a *appNode) addr() string { return a.srv.Listener.Addr().String() }

func (a *appNode) target() lb.Target { return lb.Target{Name: a.name, Addr: a.addr(), Weight: 1} }

func (a *appNode) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		a.checks.Add(1)
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
		return
	}
	a.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.lastReq = r
	if r.Method == http.MethodPost {
		a.applied[string(body)]++
	}
	a.mu.Unlock()
	if d := r.URL.Query().Get("sleep"); d != "" {
		if dur, err := time.ParseDuration(d); err == nil {
			time.Sleep(dur)
		}
	}
	if r.URL.Path == "/login" {
		http.SetCookie(w, &http.Cookie{Name: "blog_session", Value: fmt.Sprintf("%s-%d", a.name, a.hits.Load()), Path: "/"})
	}
	w.Header().Set("X-Served-By", a.name)
	if s := a.status.Load(); s != 0 {
		w.WriteHeader(int(s))
	}
	fmt.Fprintf(w, "%s %s %s\n", a.name, r.Method, r.URL.Path)
}

// kill closes the node's listener and every connection at once, as a
// crashed process would.
func (a *appNode) kill() {
	a.srv.Listener.Close()
	a.srv.CloseClientConnections()
}

// appliedCounts returns how many times each POST id was applied.
func (a *appNode) appliedCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.applied))
	for k, v := range a.applied {
		out[k] = v
	}
	return out
}

// testConfig is a Config for tests: loopback, fast checks, quiet logs.
func testConfig() lb.Config {
	cfg := lb.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "lb-test"
	cfg.DiscoveryInterval = 50 * time.Millisecond
	cfg.HealthInterval = 50 * time.Millisecond
	cfg.HealthTimeout = 500 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
	cfg.EventLoops = testEventLoops
	return cfg
}

// startLB opens a balancer over the backends d yields and waits until it
// is ready.
func startLB(tb testing.TB, cfg lb.Config, d lb.Discovery) *lb.LB {
	tb.Helper()
	return startLBWith(tb, cfg, lb.Deps{Discovery: d})
}

// startLBWith opens a balancer with deps and waits until it is ready.
func startLBWith(tb testing.TB, cfg lb.Config, deps lb.Deps) *lb.LB {
	tb.Helper()
	l, err := lb.New(cfg, deps)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := l.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	testwait.Until(tb, 5*time.Second, "lb ready", l.Ready)
	return l
}

// backendState returns the state Status reports for the named backend.
func backendState(l *lb.LB, name string) string {
	for _, b := range l.Snapshot().Backends {
		if b.Name == name {
			return b.State
		}
	}
	return "absent"
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		},
	}
}

func get(tb testing.TB, c *http.Client, url string) (*http.Response, string) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// load drives the balancer from several workers until stopped, recording
// every failure. POSTs carry a unique id in their body.
type load struct {
	url     string
	client  *http.Client
	posts   bool
	stop    chan struct{}
	wg      sync.WaitGroup
	ok      atomic.Int64
	next    atomic.Int64
	mu      sync.Mutex
	fails   []string
	postOK  map[string]bool
	postBad map[string]bool
}

func startLoad(tb testing.TB, url string, workers int, posts bool) *load {
	tb.Helper()
	ld := &load{url: url, client: newClient(), posts: posts, stop: make(chan struct{}),
		postOK: map[string]bool{}, postBad: map[string]bool{}}
	for w := 0; w < workers; w++ {
		ld.wg.Add(1)
		go ld.run(w)
	}
	tb.Cleanup(ld.halt)
	return ld
}

func (ld *load) run(w int) {
	defer ld.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-ld.stop:
			return
		default:
		}
		if ld.posts && i%2 == 1 {
			id := fmt.Sprintf("post-%d", ld.next.Add(1))
			resp, err := ld.client.Post(ld.url+"/posts", "text/plain", strings.NewReader(id))
			ld.mu.Lock()
			if err == nil && resp.StatusCode == http.StatusOK {
				ld.postOK[id] = true
			} else {
				ld.postBad[id] = true
			}
			ld.mu.Unlock()
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			continue
		}
		resp, err := ld.client.Get(ld.url + "/page")
		if err != nil {
			ld.fail(fmt.Sprintf("GET: %v", err))
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			ld.fail(fmt.Sprintf("GET: status %d", resp.StatusCode))
			continue
		}
		ld.ok.Add(1)
	}
}

func (ld *load) fail(s string) {
	ld.mu.Lock()
	ld.fails = append(ld.fails, s)
	ld.mu.Unlock()
}

func (ld *load) halt() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	ld.wg.Wait()
}

// waitOK waits until n more GETs succeeded.
func (ld *load) waitOK(tb testing.TB, n int64) {
	tb.Helper()
	target := ld.ok.Load() + n
	testwait.Until(tb, 10*time.Second, fmt.Sprintf("%d successful GETs", n), func() bool { return ld.ok.Load() >= target })
}

func (ld *load) failures() []string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]string(nil), ld.fails...)
}

var _ = context.Background
