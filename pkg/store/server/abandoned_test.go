package server_test

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/syncbuf"
	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// Issue 17: a read whose client went away while it waited (an app whose
// user gave up during a pause) was logged as a warning "store request
// failed ... context canceled" with code 503. Nothing of the store failed.
func TestReadAbandonedByItsClientIsNoWarning(t *testing.T) {
	var logs syncbuf.Buffer
	srv := startServerWith(t, server.Deps{
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, func(c *server.Config) { c.SessionWait = time.Minute })

	// A session read for an LSN the node will not reach in the test: it
	// waits. The client sends it whole and hangs up, which cancels the
	// request's context on the server.
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	req := "GET " + store.PathKV + "b/k HTTP/1.1\r\nHost: store\r\n" + store.HeaderMinLSN + ": 1000000\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	testwait.Until(t, 10*time.Second, "the debug line of the abandoned read", func() bool {
		return strings.Contains(logs.String(), "store request abandoned by its client")
	})
	if out := logs.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("a read its client abandoned logged a warning or an error:\n%s", out)
	}
}
