// Package accept is the accept loop of the servers that own their
// connections rather than leave them to net/http: the balancer, the edge
// and the cache. It accepts until the listener closes or the server's
// context ends, caps the connections open at once, and rides out failures
// such as running out of file descriptors with a growing pause instead of
// spinning, as net/http's Server does.
package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Backoff bounds of the pause after a failed accept: it starts at
// MinBackoff and doubles up to MaxBackoff while accepts keep failing.
const (
	MinBackoff = 5 * time.Millisecond
	MaxBackoff = time.Second
)

// Config is what a server tells its accept loop.
type Config struct {
	// Slots, when not nil, caps the connections open at once: the loop
	// takes a slot before each accept, so at the cap it waits for a
	// connection to close instead of accepting one it would refuse. The
	// handler then owns the slot and gives it back (<-Slots) when its
	// connection closes. Nil: no cap here (the cache refuses past its cap
	// itself, with a Redis error line).
	Slots chan struct{}
	// Log receives one warning per failed accept. Nil: slog.Default().
	Log *slog.Logger
	// Msg is that warning's message, naming the server ("lb accept failed").
	Msg string
}

// Serve accepts connections on ln and hands each to handle, in the calling
// goroutine, until ln is closed or ctx ends. handle must not block: it
// starts the connection's goroutine or hands it to an event loop.
func Serve(ctx context.Context, ln net.Listener, cfg Config, handle func(net.Conn)) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	var backoff time.Duration
	for {
		if cfg.Slots != nil {
			select {
			case cfg.Slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		nc, err := ln.Accept()
		if err == nil {
			backoff = 0
			handle(nc)
			continue
		}
		if cfg.Slots != nil {
			<-cfg.Slots
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return
		}
		backoff = min(max(2*backoff, MinBackoff), MaxBackoff)
		log.Warn(cfg.Msg, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
