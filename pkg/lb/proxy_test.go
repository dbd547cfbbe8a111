package lb_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/lb"
)

// echoApp answers with the request's method, the length of its body and
// the Expect it saw, and a trailer.
func echoApp(t *testing.T) *appNode {
	t.Helper()
	return startAppWith(t, "app-1", func(_ *appNode, s *http.Server) { s.Handler = http.HandlerFunc(echo) })
}

func echo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Trailer", "X-Sum")
	w.Header().Set("Content-Type", "text/plain")
	if r.URL.Path == "/length" {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
		return
	}
	fmt.Fprintf(w, "%s %d %s", r.Method, len(body), r.Header.Get("Expect"))
	w.Header().Set("X-Sum", fmt.Sprint(len(body)))
}

func TestChunkedBodiesAndTrailers(t *testing.T) {
	app := echoApp(t)
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 10; i++ {
			pw.Write([]byte(strings.Repeat("y", 10_000)))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, "http://"+l.Addr()+"/up", pr) // unknown length: chunked
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "PUT 100000 "; got != want {
		t.Errorf("chunked upload: body = %q, want %q", got, want)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "100000" {
		t.Errorf("trailer X-Sum = %q, want 100000", got)
	}
}

func TestExpectContinue(t *testing.T) {
	app := echoApp(t)
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	c := newClient()
	c.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
	req, _ := http.NewRequest(http.MethodPost, "http://"+l.Addr()+"/p", strings.NewReader("hello"))
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The balancer answers 100 Continue itself; the app sees no Expect.
	if got, want := string(body), "POST 5 "; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}

func TestHeadKeepsContentLength(t *testing.T) {
	app := echoApp(t)
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	resp, err := newClient().Head("http://" + l.Addr() + "/length")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 2 {
		t.Errorf("HEAD = %d, Content-Length %d; want 200, 2", resp.StatusCode, resp.ContentLength)
	}
	// The connection is still usable: nothing of a body was left on it.
	if r2, body := get(t, newClient(), "http://"+l.Addr()+"/length"); r2.StatusCode != 200 || body != "ok" {
		t.Errorf("GET after HEAD = %d %q", r2.StatusCode, body)
	}
}

// rawExchange writes raw to the balancer and returns everything it answers
// until it closes the connection or goes quiet.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		b, err := br.ReadByte()
		if err != nil {
			return out.String()
		}
		out.WriteByte(b)
	}
}

func TestRawProtocol(t *testing.T) {
	app := startApp(t, "app-1")
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	tests := []struct {
		name, raw string
		want      []string // substrings, in order
		notWant   string
	}{
		{"pipelined", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"200 OK", "app-1 GET /a", "200 OK", "Connection: close", "app-1 GET /b"}, ""},
		{"http/1.0", "GET /c HTTP/1.0\r\n\r\n", []string{"HTTP/1.1 200 OK", "Connection: close", "app-1 GET /c"}, ""},
		{"smuggling", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []string{"400 Bad Request", "Connection: close"}, "app-1"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", []string{"400 Bad Request"}, "app-1"},
		{"version", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", []string{"505 HTTP Version Not Supported"}, "app-1"},
		{"huge head", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", []string{"431 "}, "app-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawExchange(t, l.Addr(), tt.raw)
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer lacks %q (in order); got:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if tt.notWant != "" && strings.Contains(got, tt.notWant) {
				t.Errorf("answer holds %q; got:\n%s", tt.notWant, got)
			}
		})
	}
}

func TestPostAfterBackendClosedIdleConnection(t *testing.T) {
	var closed atomic.Int64
	app := startAppWith(t, "app-1", func(_ *appNode, s *http.Server) {
		s.IdleTimeout = 100 * time.Millisecond
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
	})
	disc := lb.NewStaticDiscovery(app.addr())
	cfg := testConfig()
	cfg.HealthPath = "" // no checks: they would keep the connection busy
	l := startLB(t, cfg, disc)
	c := newClient()
	post := func(id string) int {
		resp, err := c.Post("http://"+l.Addr()+"/posts", "text/plain", strings.NewReader(id))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for round := 0; round < 3; round++ {
		if got := post(fmt.Sprintf("p%d", round)); got != 200 {
			t.Fatalf("POST %d = %d, want 200", round, got)
		}
		// The app closes the balancer's idle connection; the next POST
		// must not be sent on it (it could not be retried).
		before := closed.Load()
		testwait.Until(t, 5*time.Second, "the app to close its idle connection", func() bool { return closed.Load() > before })
	}
	if n := len(app.appliedCounts()); n != 3 {
		t.Errorf("applied %d POSTs, want 3", n)
	}
}

func TestGetAfterBackendClosedIdleConnectionWithOneBackend(t *testing.T) {
	var closed atomic.Int64
	app := startAppWith(t, "app-1", func(_ *appNode, s *http.Server) {
		s.IdleTimeout = 50 * time.Millisecond
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
	})
	disc := lb.NewStaticDiscovery(app.addr())
	cfg := testConfig()
	cfg.HealthPath = ""
	l := startLB(t, cfg, disc)
	c := newClient()
	for round := 0; round < 5; round++ {
		// With one backend there is no other node to retry on: a GET sent
		// on a connection the app has just closed goes again on a new one.
		if resp, body := get(t, c, "http://"+l.Addr()+"/page"); resp.StatusCode != 200 {
			t.Fatalf("GET %d = %d %q, want 200", round, resp.StatusCode, body)
		}
		before := closed.Load()
		testwait.Until(t, 5*time.Second, "the app to close its idle connection", func() bool { return closed.Load() > before })
	}
}

func TestBodyCutByBackendIsNotPassedOffAsWhole(t *testing.T) {
	app := startAppWith(t, "app-1", func(_ *appNode, s *http.Server) {
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/readyz" {
				return
			}
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only ten..")
			w.(http.Flusher).Flush()
			// The process dies mid-body.
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		})
	})
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	c := newClient()
	c.Timeout = 5 * time.Second
	resp, err := c.Get("http://" + l.Addr() + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("reading a body the backend cut = %q, nil error; want an error", body)
	case errors.As(err, &ne) && ne.Timeout():
		// The balancer must pass the cut on (by closing), not hold the
		// client until it gives up.
		t.Errorf("reading a body the backend cut: %v; want the connection closed at once", err)
	}
}

func TestTrustForwardedProto(t *testing.T) {
	for _, trust := range []bool{false, true} {
		app := startApp(t, "app-1")
		disc := lb.NewStaticDiscovery(app.addr())
		cfg := testConfig()
		cfg.TrustForwarded = trust
		l := startLB(t, cfg, disc)
		req, _ := http.NewRequest(http.MethodGet, "http://"+l.Addr()+"/", nil)
		req.Header.Set("X-Forwarded-Proto", "https")
		resp, err := newClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		app.mu.Lock()
		got := app.lastReq.Header.Get("X-Forwarded-Proto")
		app.mu.Unlock()
		want := "http"
		if trust {
			want = "https"
		}
		if got != want {
			t.Errorf("TrustForwarded=%v: backend got X-Forwarded-Proto %q, want %q", trust, got, want)
		}
	}
}
