package natsserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A route to a peer that is down is a warning (the peer's fault, retried);
// any other error nats-server reports stays an error.
func TestRouteDialFailureIsAWarning(t *testing.T) {
	var buf bytes.Buffer
	l := newNATSLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	l.Errorf("Error trying to connect to route (attempt %d): %v", 3, "dial tcp 127.0.0.2:6222: connect: connection refused")
	l.Errorf("Error listening on port: %s, %q", "127.0.0.2:4222", "address already in use")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got %d:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "attempt 3") {
		t.Errorf("route dial failure: want a WARN line, got %s", lines[0])
	}
	if !strings.Contains(lines[1], "level=ERROR") {
		t.Errorf("listen failure: want an ERROR line, got %s", lines[1])
	}
}
