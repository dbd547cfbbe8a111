package cdn

import (
	"bufio"
	"strings"
	"testing"
)

// FuzzRequestHead feeds arbitrary bytes to the server's request-head
// parser: it must never panic, and a head it accepts must have spans inside
// what it read and a request line with a method and a target.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a?b=c HTTP/1.0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\nHost: y\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := &Edge{cfg: DefaultConfig()}
		e.cfg.MaxHeaderBytes = 4096
		c := &conn{e: e, br: bufio.NewReaderSize(strings.NewReader(s), 4096)}
		var h reqHead
		if status := c.readHead(&h); status != 0 {
			return
		}
		n := len(c.head)
		in := func(sp span) bool { return 0 <= sp.a && sp.a <= sp.b && sp.b <= n }
		if !in(h.method) || !in(h.target) || h.method.a == h.method.b || h.target.a == h.target.b {
			t.Fatalf("accepted %q with method %v target %v in %d bytes", s, h.method, h.target, n)
		}
		for _, f := range c.fields {
			if !in(f.name) || !in(f.value) || f.name.a == f.name.b {
				t.Fatalf("accepted %q with field spans %v", s, f)
			}
		}
		if h.chunked && h.contentLength != -1 {
			t.Fatalf("accepted %q as chunked with Content-Length %d", s, h.contentLength)
		}
	})
}
