package lb_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/lb"
)

// rawBackend answers every request on a keep-alive connection with the same
// small response, with as little work of its own as possible, so that a
// benchmark measures the balancer.
func rawBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	body := strings.Repeat("x", 127) + "\n"
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// Requests carry no body: a head ends at an empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// rawGet sends GETs on one connection and reads Content-Length responses.
type rawGet struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newRawGet(tb testing.TB, addr string) *rawGet {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &rawGet{c: c, br: bufio.NewReader(c), req: []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")}
}

func (g *rawGet) do() error {
	if _, err := g.c.Write(g.req); err != nil {
		return err
	}
	length := -1
	first := true
	for {
		line, err := g.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !strings.HasPrefix(string(line), "HTTP/1.1 200") {
				return io.ErrUnexpectedEOF
			}
			first = false
			continue
		}
		if len(line) <= 2 {
			break
		}
		if name, value, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(name, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	_, err := g.br.Discard(length)
	return err
}

func benchLB(b *testing.B, loops int) *lb.LB {
	cfg := lb.DefaultConfig()
	cfg.EventLoops = loops
	cfg.Addr = "127.0.0.1:0"
	cfg.Backends = []string{rawBackend(b), rawBackend(b)}
	cfg.HealthPath = "" // the raw backends answer only what the benchmark sends
	l, err := lb.New(cfg, lb.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	testwait.Until(b, 5*time.Second, "lb ready", l.Ready)
	return l
}

// transports are the balancer's two transports, for sub-benchmarks: the
// default (event loops on Linux) and a goroutine per connection.
var transports = []struct {
	name  string
	loops int
}{{"default", lb.DefaultConfig().EventLoops}, {"goroutines", 0}}

// BenchmarkProxyGET is one client connection doing GETs through the
// balancer to two backends: its allocs/op are the balancer's per-request
// allocations (the raw client and backends allocate nothing per request).
func BenchmarkProxyGET(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			getLoop(b, benchLB(b, tr.loops).Addr())
		})
	}
}

// BenchmarkProxyGETParallel is BenchmarkProxyGET over many connections.
func BenchmarkProxyGETParallel(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			l := benchLB(b, tr.loops)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				g := newRawGet(b, l.Addr())
				for pb.Next() {
					if err := g.do(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkReverseProxyGET is the baseline the balancer is measured
// against: net/http's server with httputil.ReverseProxy and a tuned
// Transport, to the same raw backends, from the same raw client.
func BenchmarkReverseProxyGET(b *testing.B) {
	backends := []string{rawBackend(b), rawBackend(b)}
	var next atomic.Uint64
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: backends[next.Add(1)%2]})
			pr.SetXForwarded()
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	getLoop(b, ln.Addr().String())
}

// getLoop times b.N GETs on one connection to addr, after one to warm up.
func getLoop(b *testing.B, addr string) {
	g := newRawGet(b, addr)
	if err := g.do(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := g.do(); err != nil {
			b.Fatal(err)
		}
	}
}
