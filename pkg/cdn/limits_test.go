package cdn_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cdn"
)

// dialSmall connects to the edge with a small receive buffer, so that a
// client that does not read blocks the edge's writes soon.
func dialSmall(t testing.TB, e *cdn.Edge) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return serr
	}}
	c, err := d.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatalf("dial edge: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func connections(e *cdn.Edge) int { return e.Snapshot().Connections }

// bigOrigin serves /big, size bytes that may be stored, and /stream, size
// bytes that may not (so the edge streams them through).
func bigOrigin(t testing.TB, size int) *origin {
	body := strings.Repeat("x", size)
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Cache-Control", "max-age=60")
		} else {
			w.Header().Set("Cache-Control", "no-store")
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.WriteString(w, body)
	})
}

// A client that stops reading is cut within WriteTimeout, whether it waits
// on hits (written from the edge's memory) or on a body streamed from the
// origin, and the edge goes on serving.
func TestClientThatStopsReadingIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	o := bigOrigin(t, 12<<20)
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) {
		c.WriteTimeout = timeout
		c.MaxObjectBytes = 16 << 20
	})
	warm := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := warm.Get("http://" + e.Addr() + "/big")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	for _, tt := range []struct{ name, requests string }{
		{"hits", strings.Repeat("GET /big HTTP/1.1\r\nHost: edge\r\n\r\n", 8)},
		{"streamed", "GET /stream HTTP/1.1\r\nHost: edge\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testwait.Until(t, 5*time.Second, "no client connection open", func() bool { return connections(e) == 0 })
			c := dialSmall(t, e)
			if _, err := io.WriteString(c, tt.requests); err != nil {
				t.Fatal(err)
			}
			testwait.Until(t, 5*time.Second, "the connection to be served", func() bool { return connections(e) == 1 })
			start := time.Now()
			// waitFor gives up after 5s: far more than WriteTimeout.
			testwait.Until(t, 5*time.Second, "the edge to cut the client that does not read", func() bool { return connections(e) == 0 })
			t.Logf("cut after %v", time.Since(start).Round(time.Millisecond))
			resp, err := warm.Get("http://" + e.Addr() + "/big")
			if err != nil {
				t.Fatalf("GET /big after the cut: %v", err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != 12<<20 {
				t.Fatalf("GET /big after the cut: status %d, %d bytes", resp.StatusCode, n)
			}
		})
	}
}

// WriteTimeout bounds a stall, not a whole response: a client that reads
// slowly but steadily gets a download that takes far longer than it.
func TestSlowReaderIsNotCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	const size = 12 << 20
	o := bigOrigin(t, size)
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.WriteTimeout = timeout })
	c := dialSmall(t, e)
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	r := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 256<<10)
	got := 0
	for {
		n, err := io.ReadFull(resp.Body, buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // 48 pauses: the download takes over a second
	}
	if got != size {
		t.Fatalf("slow reader got %d bytes, want %d", got, size)
	}
	if d := time.Since(start); d < 2*timeout {
		t.Logf("download took only %v; the test proves little on this machine", d)
	}
}

// panicOrigins panics once when armed, in the middle of a request.
type panicOrigins struct {
	addr  string
	armed atomic.Bool
}

func (p *panicOrigins) Origins() []string {
	if p.armed.CompareAndSwap(true, false) {
		panic("test: origins panicked")
	}
	return []string{p.addr}
}

// A panic in the request path becomes a 500 for that request, with the
// stack in the log; the edge keeps serving.
func TestHandlerPanicIs500(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page "+r.URL.Path)
	})
	origins := &panicOrigins{addr: strings.TrimPrefix(o.URL, "http://")}
	e := newEdge(t, "", func(c *cdn.Config, d *cdn.Deps) { d.Origins = origins })

	origins.armed.Store(true)
	if r := get(t, e, "/boom"); r.status != http.StatusInternalServerError {
		t.Fatalf("GET /boom while the request path panics: status %d, want 500", r.status)
	}
	if r := get(t, e, "/after"); r.status != 200 || r.body != "page /after" {
		t.Fatalf("GET /after the panic: status %d body %q, want 200 %q", r.status, r.body, "page /after")
	}
	// A pipelined request before the one that panics keeps its answer.
	c, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	origins.armed.Store(true)
	io.WriteString(c, "GET /after HTTP/1.1\r\nHost: edge\r\n\r\nGET /boom2 HTTP/1.1\r\nHost: edge\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for _, want := range []int{200, 500} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined response (want %d): %v", want, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("pipelined response: status %d, want %d", resp.StatusCode, want)
		}
	}
}

// At MaxConns the edge accepts no more connections until one closes: the
// next client waits in the listen queue and is served then.
func TestMaxConns(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	})
	cfg := cdn.DefaultConfig()
	cfg.Origin, cfg.MaxConns = o.URL, 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "MaxConns") {
		t.Errorf("Validate() with MaxConns 0 = %v, want an error naming MaxConns", err)
	}
	e := newEdge(t, o.URL, func(c *cdn.Config, d *cdn.Deps) { c.MaxConns = 2 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", e.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", len(held)+1, err)
		}
		resp.Body.Close()
		held = append(held, c)
	}
	third, err := net.Dial("tcp", e.Addr()) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
	br := bufio.NewReader(third)
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("third connection over MaxConns 2 served at once (status %d), want it to wait", resp.StatusCode)
	}
	held[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("third connection after one closed: %v, want it served", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("third connection: status %d, want 200", resp.StatusCode)
	}
}
