package lb_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/lb"
)

// testEventLoops is the transport the tests run on: the default (event loops
// on Linux), or LB_TEST_EVENT_LOOPS when set, which
// TestGoroutineTransport uses to run the whole suite again with a goroutine
// per connection.
var testEventLoops = func() int {
	if v := os.Getenv("LB_TEST_EVENT_LOOPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic("LB_TEST_EVENT_LOOPS: " + err.Error())
		}
		return n
	}
	return lb.DefaultConfig().EventLoops
}()

// TestGoroutineTransport runs every other test of the package again with
// EventLoops 0, in a child process of this test binary, so that both
// transports pass the same suite.
func TestGoroutineTransport(t *testing.T) {
	if os.Getenv("LB_TEST_EVENT_LOOPS") != "" {
		t.Skip("this is the child run")
	}
	if testEventLoops == 0 {
		t.Skip("the suite already runs on the goroutine transport here (no event loops on " + runtime.GOOS + ")")
	}
	if testing.Short() {
		t.Skip("-short: one transport is enough")
	}
	args := []string{"-test.run", "^Test", "-test.skip", "^TestGoroutineTransport$", "-test.count", "1"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LB_TEST_EVENT_LOOPS=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite with a goroutine per connection failed: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("the child run did not pass:\n%s", out)
	}
	t.Logf("the suite passed with a goroutine per connection:\n%s", lastLines(out, 3))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestResponseTimeoutAnswers504 checks ResponseHeaderTimeout: a backend that
// does not answer in time gets a GET retried elsewhere and, when no backend
// answers, a 504 (never a POST sent twice).
func TestResponseTimeoutAnswers504(t *testing.T) {
	app := startApp(t, "app-1")
	disc := lb.NewStaticDiscovery(app.addr())
	cfg := testConfig()
	cfg.ResponseHeaderTimeout = 300 * time.Millisecond
	l := startLB(t, cfg, disc)
	c := newClient()

	start := time.Now()
	resp, body := get(t, c, "http://"+l.Addr()+"/slow?sleep=2s")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("GET of a backend that sleeps 2s: %d %q, want 504", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("504 came after %v, want about the 300ms timeout", d)
	}
	resp, err := c.Post("http://"+l.Addr()+"/slow?sleep=1s", "text/plain", strings.NewReader("post-slow"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("POST of a backend that sleeps 1s: %d, want 504", resp.StatusCode)
	}
	time.Sleep(1200 * time.Millisecond) // the handler finishes
	if n := app.appliedCounts()["post-slow"]; n != 1 {
		t.Errorf("the timed-out POST was applied %d times, want once", n)
	}
	// The balancer still answers after its timeouts.
	if resp, body := get(t, c, "http://"+l.Addr()+"/fast"); resp.StatusCode != 200 || !strings.Contains(body, "app-1 GET /fast") {
		t.Errorf("GET after the timeouts: %d %q", resp.StatusCode, body)
	}
}

// TestLargeResponseToSlowReader streams a body many times larger than the
// socket buffers to a client that reads slowly: it must arrive whole, with
// the balancer holding back the backend rather than buffering it all.
func TestLargeResponseToSlowReader(t *testing.T) {
	const size = 8 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	want := sha256.Sum256(payload)
	app := startAppWith(t, "big", func(_ *appNode, s *http.Server) {
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			w.Write(payload)
		})
	})
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(conn, 4096)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		h := sha256.New()
		buf := make([]byte, 16<<10)
		n := int64(0)
		for {
			k, err := resp.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("response %d: body after %d bytes: %v", i, n, err)
			}
			if i == 0 && n < 4<<20 {
				time.Sleep(2 * time.Millisecond) // slow at first: the socket fills
			}
		}
		resp.Body.Close()
		if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("response %d: %d bytes, sha256 %x; want %d bytes, %x", i, n, h.Sum(nil), size, want)
		}
	}
}

// TestOneConnectionMixesBodiesAndGets sends, pipelined on one connection,
// requests the event loop carries itself and requests with a body or a
// chunked response that it hands to a goroutine: each is answered, in
// order, on the same connection.
func TestOneConnectionMixesBodiesAndGets(t *testing.T) {
	app := echoApp(t)
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	raw := "GET /length HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /length HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	got := rawExchange(t, l.Addr(), raw)
	rest := got
	for _, w := range []string{"200 OK", "\r\n\r\nok", "200 OK", "POST 5", "200 OK", "Transfer-Encoding: chunked", "GET 0", "X-Sum: 0", "200 OK", "Connection: close", "\r\n\r\nok"} {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("answers lack %q (in order); got:\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
}

// TestIdleConnectionsAreClosed checks IdleTimeout on a kept-alive client
// connection.
func TestIdleConnectionsAreClosed(t *testing.T) {
	app := startApp(t, "app-1")
	disc := lb.NewStaticDiscovery(app.addr())
	cfg := testConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	l := startLB(t, cfg, disc)
	conn, err := net.Dial("tcp", l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on an idle connection: %v, want EOF from the balancer closing it", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("the idle connection was closed after %v, want about 200ms", d)
	}
}

// TestClientsThatLeaveMidResponse has clients hang up in every phase of a
// request (before the answer, mid-body of a large response, after sending
// half a head) while others keep going: the balancer counts them, frees
// their backend connections (nothing stays in flight) and serves the rest.
func TestClientsThatLeaveMidResponse(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 4<<20)
	app := startAppWith(t, "app-1", func(_ *appNode, s *http.Server) {
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/big":
				w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
				w.Write(payload)
			case "/slow":
				time.Sleep(200 * time.Millisecond)
				io.WriteString(w, "slow")
			default:
				io.WriteString(w, "ok")
			}
		})
	})
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	leave := func(raw string, readFirst int) {
		conn, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Error(err)
			return
		}
		io.WriteString(conn, raw)
		if readFirst > 0 {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadFull(conn, make([]byte, readFirst))
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, as a crashed client's
		}
		conn.Close()
	}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				leave("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 64<<10) // mid-body
			case 1:
				leave("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 0) // before the answer
			case 2:
				leave("GET /half HTTP/1.1\r\nHost: x\r\nX-A:", 0) // mid-head
			}
		}()
	}
	c := newClient()
	for range 20 {
		if resp, body := get(t, c, "http://"+l.Addr()+"/ok"); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET while clients leave: %d %q", resp.StatusCode, body)
		}
	}
	wg.Wait()
	testwait.Until(t, 5*time.Second, "no request in flight", func() bool { return l.Snapshot().InFlight == 0 })
	if s := l.Snapshot(); s.ClientGone == 0 {
		t.Errorf("client_gone = 0 after ten clients hung up mid-body")
	}
	if resp, body := get(t, c, "http://"+l.Addr()+"/big"); resp.StatusCode != 200 || len(body) != len(payload) {
		t.Errorf("GET /big after the hang-ups: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// TestStatusCountsConnections checks the connection figures of Status: open
// client connections, the transport, and the hand-offs of connections whose
// request has a body (event loops only).
func TestStatusCountsConnections(t *testing.T) {
	app := echoApp(t)
	l := startLB(t, testConfig(), lb.NewStaticDiscovery(app.addr()))
	want := "goroutine per connection"
	if testEventLoops > 0 {
		want = fmt.Sprintf("%d event loops", testEventLoops)
	}
	if got := l.Snapshot().Transport; got != want {
		t.Errorf("transport = %q, want %q", got, want)
	}
	var conns []net.Conn
	for range 3 {
		conn, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	testwait.Until(t, 5*time.Second, "3 client connections", func() bool { return l.Snapshot().Connections == 3 })
	// A POST with a body on one of them, then a GET on the same connection.
	fmt.Fprintf(conns[0], "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /length HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conns[0])
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: %d", i, resp.StatusCode)
		}
	}
	handed := l.Snapshot().HandedOff
	if (testEventLoops > 0) != (handed == 1) {
		t.Errorf("handed to goroutines = %d after one POST with a body (event loops: %d)", handed, testEventLoops)
	}
	for _, c := range conns {
		c.Close()
	}
	testwait.Until(t, 5*time.Second, "no client connection", func() bool { return l.Snapshot().Connections == 0 })
}
