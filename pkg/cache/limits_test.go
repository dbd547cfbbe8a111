package cache_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/cache"
)

// waitClosed wants the server to close c within d: a read that ends in EOF
// or a reset, not in c's own deadline.
func waitClosed(tb testing.TB, c net.Conn, d time.Duration) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Fatalf("connection still open after %v (read %q), want it closed by the server", d, rest)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		tb.Fatalf("read until close: %v", err)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Clients that announce large values and never send them must not make the
// server allocate what they announce: 200 connections each declaring a
// 1,000,000-byte argument kept the Go heap 200 MiB larger before the
// buffers grew only with the bytes that arrived. Before AUTH, such a
// request is refused at once.
func TestDeclaredLengthsCostNothing(t *testing.T) {
	const conns = 200
	const declared = "$1000000\r\n"
	tests := []struct {
		name     string
		password string
		send     string
		reply    string // the reply to the request before the partial one
		then     string // what follows, "" for nothing (the request waits for its bytes)
	}{
		{"open", "", "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n" + declared, "+PONG\r\n", ""},
		{"before AUTH", "s3cret", "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nAUTH\r\n" + declared, "-NOAUTH Authentication required.\r\n",
			"-ERR Protocol error: invalid bulk length"},
	}
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				srv := startServer(t, mode, func(c *cache.Config) { c.Password = tt.password })
				before := heapInUse()
				var cs []net.Conn
				for range conns {
					c := dial(t, srv)
					c.SetDeadline(time.Now().Add(20 * time.Second))
					if _, err := c.Write([]byte(tt.send)); err != nil {
						t.Fatalf("write: %v", err)
					}
					cs = append(cs, c)
				}
				// The reply to the first request says the server has read
				// what came with it, the announcement included.
				for i, c := range cs {
					if got := readN(t, c, len(tt.reply)); got != tt.reply {
						t.Fatalf("connection %d: reply %q, want %q", i, got, tt.reply)
					}
				}
				grown := int64(heapInUse()) - int64(before)
				t.Logf("heap grew by %.1f MiB for %d connections", float64(grown)/(1<<20), conns)
				if limit := int64(40 << 20); grown > limit {
					t.Errorf("heap grew by %d MiB for %d connections announcing 1 MB each, want under %d MiB",
						grown>>20, conns, limit>>20)
				}
				if tt.then != "" {
					for _, c := range cs[:5] {
						expectErrorAndClose(t, c, tt.then)
					}
				}
			})
		}
	})
}

// A wrong AUTH is answered only after AuthFailDelay, with nothing else on
// the connection executed meanwhile (pipelined guesses wait in turn), and
// the third closes the connection: the right password sent fourth is never
// tried.
func TestAuthFailuresSlowedAndClosed(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		const delay = 150 * time.Millisecond
		srv := startServer(t, mode, func(c *cache.Config) {
			c.Password = "s3cret"
			c.AuthFailDelay = delay
		})
		c := dial(t, srv)
		start := time.Now()
		c.Write([]byte("AUTH a\r\nAUTH b\r\nAUTH c\r\nAUTH s3cret\r\nPING\r\n"))
		r := bufio.NewReader(c)
		for i := 1; i <= 3; i++ {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reply %d: %q, %v", i, line, err)
			}
			if !strings.HasPrefix(line, "-WRONGPASS") {
				t.Fatalf("reply %d = %q, want -WRONGPASS", i, line)
			}
			if got, want := time.Since(start), time.Duration(i)*delay; got < want {
				t.Errorf("wrong AUTH %d answered after %v, want at least %v", i, got, want)
			}
		}
		rest, err := io.ReadAll(r)
		if (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(rest) != 0 {
			t.Fatalf("after the third wrong AUTH: %q, %v; want the connection closed", rest, err)
		}
		if got := srv.Status().(cache.Status).AuthFailures; got != 3 {
			t.Errorf("Status().AuthFailures = %d, want 3", got)
		}

		// The right password is not held back, and one wrong try before
		// it does not close the connection.
		c = dial(t, srv)
		c.Write([]byte("AUTH nope\r\nAUTH s3cret\r\nPING\r\n"))
		want := "-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n+PONG\r\n"
		if got := readN(t, c, len(want)); got != want {
			t.Errorf("wrong then right AUTH = %q, want %q", got, want)
		}
	})
}

// With a password, a connection that does not authenticate within
// AuthTimeout is closed; one that did stays open past it.
func TestAuthTimeout(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		const timeout = 200 * time.Millisecond
		srv := startServer(t, mode, func(c *cache.Config) {
			c.Password = "s3cret"
			c.AuthTimeout = timeout
		})
		authed := dial(t, srv)
		authed.Write([]byte("AUTH s3cret\r\n"))
		readN(t, authed, len("+OK\r\n"))

		silent := dial(t, srv)
		start := time.Now()
		waitClosed(t, silent, 5*time.Second)
		if d := time.Since(start); d < timeout {
			t.Errorf("unauthenticated connection closed after %v, want at least %v", d, timeout)
		}

		time.Sleep(timeout) // past the timeout: the authenticated connection must not care
		authed.Write([]byte("PING\r\n"))
		if got := readN(t, authed, len("+PONG\r\n")); got != "+PONG\r\n" {
			t.Errorf("PING on the authenticated connection = %q, want +PONG", got)
		}
	})
}

// Out of the box a connection does not stay open forever, and one that does
// not know the password is bounded sooner.
func TestDefaultsBoundConnections(t *testing.T) {
	cfg := cache.DefaultConfig()
	if cfg.IdleTimeout <= 0 || cfg.IdleTimeout > 10*time.Minute {
		t.Errorf("DefaultConfig().IdleTimeout = %v, want a few minutes", cfg.IdleTimeout)
	}
	if cfg.AuthTimeout <= 0 || cfg.AuthTimeout > time.Minute {
		t.Errorf("DefaultConfig().AuthTimeout = %v, want seconds", cfg.AuthTimeout)
	}
	if cfg.AuthFailDelay <= 0 {
		t.Errorf("DefaultConfig().AuthFailDelay = %v, want > 0", cfg.AuthFailDelay)
	}
	if cfg.MaxClients <= 0 {
		t.Errorf("DefaultConfig().MaxClients = %d, want > 0", cfg.MaxClients)
	}
}
