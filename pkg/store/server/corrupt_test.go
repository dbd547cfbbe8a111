package server_test

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// corruptingProxy forwards TCP to target; on the first connection it flips
// one byte of what the target sends after skip bytes, then cuts the next
// connection short after cut bytes: a corrupt frame, then a truncated one.
func corruptingProxy(tb testing.TB, target string, skip, cut int) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				t, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer t.Close()
				go func() { _, _ = io.Copy(t, c); t.Close() }()
				buf := make([]byte, 32<<10)
				seen := 0
				for {
					k, err := t.Read(buf)
					if k > 0 {
						switch {
						case n == 1 && seen <= skip && skip < seen+k:
							buf[skip-seen] ^= 0x40
						case n == 2 && seen+k > cut:
							_, _ = c.Write(buf[:max(0, cut-seen)])
							return
						}
						seen += k
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type fixedPrimary struct{ name, addr string }

func (f fixedPrimary) StoreNodes() []store.NodeInfo {
	return []store.NodeInfo{{Name: f.name, Addr: f.addr, Primary: true}}
}

func TestCorruptAndTruncatedFramesResume(t *testing.T) {
	p := startServer(t, func(c *server.Config) { c.NodeName = "p" })
	for i := range 300 {
		mustTxn(t, p.DB(), store.Put("b", fmt.Sprintf("k%03d", i), []byte(fmt.Sprintf("value %d with some padding to fill frames", i))))
	}
	proxy := corruptingProxy(t, p.Addr(), 5000, 3000)
	r := startServerWith(t, server.Deps{Peers: fixedPrimary{"p", proxy}}, func(c *server.Config) {
		c.NodeName = "r"
		c.Role = server.RoleReplica
		c.HeartbeatInterval = 50 * time.Millisecond
	})
	waitConverged(t, 10*time.Second, p, r)
	f := *replStatus(r).Following
	if f.Reconnects < 2 {
		t.Fatalf("replica reconnected %d times, want at least 2 (corrupt frame, truncated stream)", f.Reconnects)
	}
	t.Logf("converged after %d reconnects; last error: %s", f.Reconnects, f.LastError)
}
