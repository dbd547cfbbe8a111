package lb_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/lb"
)

const bigSize = 12 << 20

// bigApp answers /big with bigSize bytes and a Content-Length (a response
// the event loops carry), /chunked with as many bytes in chunks (one they
// hand to a goroutine), and /readyz with 200.
func bigApp(t testing.TB) string {
	t.Helper()
	chunk := strings.Repeat("x", 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			io.WriteString(w, "ok")
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(bigSize))
			for range bigSize / len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		default:
			for range bigSize / len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// dialSmall connects with a small receive buffer, so that a client that
// does not read blocks the balancer's writes soon.
func dialSmall(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that stops reading is cut within WriteTimeout, on a response
// the event loops carry and on one a goroutine carries, and the balancer
// goes on serving. Before, WriteTimeout defaulted to none and such a
// client held its connection and a backend connection for good.
func TestClientThatStopsReadingIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	disc := lb.NewStaticDiscovery(bigApp(t))
	cfg := testConfig()
	cfg.WriteTimeout = timeout
	l := startLB(t, cfg, disc)
	for _, path := range []string{"/big", "/chunked"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			testwait.Until(t, 5*time.Second, "no client connection", func() bool { return l.Snapshot().Connections == 0 })
			c := dialSmall(t, l.Addr())
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: lb\r\n\r\n", path)
			testwait.Until(t, 5*time.Second, "the client connection", func() bool { return l.Snapshot().Connections == 1 })
			start := time.Now()
			testwait.Until(t, 5*time.Second, "the balancer to cut the client that does not read", func() bool { return l.Snapshot().Connections == 0 })
			t.Logf("cut after %v", time.Since(start).Round(time.Millisecond))

			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + l.Addr() + path)
			if err != nil {
				t.Fatalf("GET %s after the cut: %v", path, err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != bigSize {
				t.Fatalf("GET %s after the cut: status %d, %d bytes, want 200, %d", path, resp.StatusCode, n, bigSize)
			}
		})
	}
}

// WriteTimeout bounds a stall, not a response: a client that reads slowly
// but steadily gets a download far longer than the timeout.
func TestSlowReaderIsNotCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	disc := lb.NewStaticDiscovery(bigApp(t))
	cfg := testConfig()
	cfg.WriteTimeout = timeout
	l := startLB(t, cfg, disc)
	for _, path := range []string{"/big", "/chunked"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			c := dialSmall(t, l.Addr())
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n", path)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			start := time.Now()
			resp, err := http.ReadResponse(bufio.NewReaderSize(c, 64<<10), nil)
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
			if got != bigSize {
				t.Fatalf("slow reader got %d bytes of %s, want %d", got, path, bigSize)
			}
			t.Logf("download took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

// At MaxConns the balancer accepts no more client connections until one
// closes: the next client waits in the listen queue and is served then.
func TestMaxConns(t *testing.T) {
	disc := lb.NewStaticDiscovery(echoApp(t).addr())
	cfg := testConfig()
	cfg.MaxConns = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "MaxConns") {
		t.Errorf("Validate() with MaxConns 0 = %v, want an error naming MaxConns", err)
	}
	cfg.MaxConns = 2
	l := startLB(t, cfg, disc)
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", len(held)+1, err)
		}
		resp.Body.Close()
		held = append(held, c)
	}
	third, err := net.Dial("tcp", l.Addr()) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
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
