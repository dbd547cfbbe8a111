package cdn_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cdn"
)

// rawConn opens a TCP connection to the edge for tests that write the
// request bytes themselves.
func rawConn(t testing.TB, e *cdn.Edge) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatalf("dial edge: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t testing.TB, br *bufio.Reader, method string) response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func TestServerPipelining(t *testing.T) {
	e := newEdge(t, cacheablePages(t).URL, nil)
	get(t, e, "/a") // stored: the next ones take the hit path
	c, br := rawConn(t, e)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	wantCache(t, "pipelined GET hit", readResponse(t, br, "GET"), cdn.Hit, "page /a")
	wantCache(t, "pipelined HEAD hit", readResponse(t, br, "HEAD"), cdn.Hit, "")
	wantCache(t, "pipelined miss", readResponse(t, br, "GET"), cdn.Miss, "page /b")
	last := readResponse(t, br, "GET")
	wantCache(t, "pipelined last", last, cdn.Hit, "page /a")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after Connection: close (read err %v)", err)
	}
}

func TestServerHTTP10ClosesConnection(t *testing.T) {
	e := newEdge(t, cacheablePages(t).URL, nil)
	get(t, e, "/a")
	c, br := rawConn(t, e)
	fmt.Fprint(c, "GET /a HTTP/1.0\r\n\r\n")
	wantCache(t, "HTTP/1.0 hit", readResponse(t, br, "GET"), cdn.Hit, "page /a")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("HTTP/1.0 connection left open (read err %v)", err)
	}
}

func TestServerBadRequests(t *testing.T) {
	e := newEdge(t, cacheablePages(t).URL, func(c *cdn.Config, d *cdn.Deps) { c.MaxHeaderBytes = 2048 })
	tests := []struct {
		name, raw string
		want      int
	}{
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"garbage", "HELLO\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n", 505},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"line folding", "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 4096) + "\r\n\r\n", 431},
	}
	for _, tt := range tests {
		c, br := rawConn(t, e)
		io.WriteString(c, tt.raw)
		if r := readResponse(t, br, "GET"); r.status != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, r.status, tt.want)
		}
	}
}

func TestServerRequestBodies(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, len(b), b)
	})
	e := newEdge(t, o.URL, nil)
	c, br := rawConn(t, e)
	// A chunked body, a sized one and an Expect: 100-continue, on one
	// connection: each must be read exactly, or the next request breaks.
	fmt.Fprint(c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if r := readResponse(t, br, "POST"); r.body != "POST 11 hello world" {
		t.Fatalf("chunked POST: body %q, want %q", r.body, "POST 11 hello world")
	}
	fmt.Fprint(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if r := readResponse(t, br, "PUT"); r.body != "PUT 3 abc" {
		t.Fatalf("sized PUT: body %q, want %q", r.body, "PUT 3 abc")
	}
	fmt.Fprint(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if r := readResponse(t, br, "POST"); r.status != http.StatusContinue {
		t.Fatalf("Expect: 100-continue: status %d, want 100 first", r.status)
	}
	io.WriteString(c, "ok")
	if r := readResponse(t, br, "POST"); r.body != "POST 2 ok" {
		t.Fatalf("POST after 100 Continue: body %q, want %q", r.body, "POST 2 ok")
	}
}

func TestServerStreamsChunked(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
	})
	e := newEdge(t, o.URL, nil)
	r := get(t, e, "/stream")
	if r.body != "part0;part1;part2;" {
		t.Fatalf("streamed body %q, want the three parts", r.body)
	}
}

func TestCloseWaitsForInFlight(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "late")
	})
	cfg := cdn.DefaultConfig()
	cfg.Addr, cfg.Origin, cfg.DrainTimeout = "127.0.0.1:0", o.URL, 5*time.Second
	e, err := cdn.New(cfg, cdn.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Open(); err != nil {
		t.Fatal(err)
	}
	got := make(chan response, 1)
	go func() { got <- get(t, e, "/slow") }()
	testwait.Until(t, 5*time.Second, "the request to reach the origin", func() bool { return o.hits.Load() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.body != "late" {
		t.Fatalf("in-flight request during Close: %d %q, want 200 late", r.status, r.body)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if e.Ready() {
		t.Fatal("Ready() = true after Close")
	}
}

// TestServerBothFramings checks the edge's answer to a request with both
// Content-Length and Transfer-Encoding (RFC 9112 §6.3): the body is read as
// chunked, and the connection is closed after the response.
func TestServerBothFramings(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, len(b), b)
	})
	e := newEdge(t, o.URL, nil)
	c, br := rawConn(t, e)
	fmt.Fprint(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	if r := readResponse(t, br, "POST"); r.body != "POST 5 hello" {
		t.Fatalf("body %q, want %q", r.body, "POST 5 hello")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection left open after a request with both framings (read err %v)", err)
	}
}

// TestServerChunkedTrailers checks that a chunked request body's trailer
// section is read to its end, so that the next request on the connection
// is read from its first byte.
func TestServerChunkedTrailers(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, len(b), b)
	})
	e := newEdge(t, o.URL, nil)
	c, br := rawConn(t, e)
	fmt.Fprint(c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n")
	if r := readResponse(t, br, "POST"); r.body != "POST 2 hi" {
		t.Fatalf("chunked POST with a trailer: body %q, want %q", r.body, "POST 2 hi")
	}
	fmt.Fprint(c, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if r := readResponse(t, br, "PUT"); r.body != "PUT 3 abc" {
		t.Fatalf("request after the trailer: body %q, want %q", r.body, "PUT 3 abc")
	}
}
