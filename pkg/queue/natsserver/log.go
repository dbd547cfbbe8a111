package natsserver

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// natsLogger routes nats-server's printf-style log calls into slog. It
// implements nats-server's server.Logger.
//
// Fatalf does not exit the process, unlike nats-server's own logger: an
// embedded server failing (a taken port, say) must become an error from
// Open, not the end of the node. The last fatal message is kept for that.
//
// One state is logged as a state rather than as nats-server repeats it: a
// clustered JetStream with no route to another server yet. nats-server's
// Raft waits for a route before it starts, warning "Waiting for routing to
// be established..." every two seconds for as long as no second server
// comes, which on a lone store node (stages 1 to 3, or a primary whose
// replicas are not up yet) is forever. Nothing is wrong there: plain NATS
// works, and JetStream starts when a peer routes to this server. So the
// wait is logged once at info, its repeats at debug, and its end (the meta
// group has a leader) once at info again.
type natsLogger struct {
	log *slog.Logger

	mu    sync.Mutex
	fatal string
	// waitingSince is when the route wait was first seen; zero while
	// JetStream is not waiting for a route.
	waitingSince time.Time
}

// routeWait is nats-server's line (raft.go) while a clustered JetStream
// waits for its first route.
const routeWait = "Waiting for routing to be established..."

func newNATSLogger(log *slog.Logger) *natsLogger {
	return &natsLogger{log: log}
}

func (l *natsLogger) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Info(msg)
	if isNewMetaLeader(msg) {
		l.mu.Lock()
		since := l.waitingSince
		l.waitingSince = time.Time{}
		l.mu.Unlock()
		if !since.IsZero() {
			l.log.Info("jetstream: the wait for another NATS server is over, JetStream works",
				"waited", time.Since(since).Round(time.Millisecond))
		}
	}
}

func (l *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if msg == routeWait {
		l.routeWait(msg)
		return
	}
	l.log.Warn(msg)
}

// routeWait logs the first of nats-server's route-wait warnings at info,
// saying what it means, and its repeats at debug.
func (l *natsLogger) routeWait(msg string) {
	l.mu.Lock()
	first := l.waitingSince.IsZero()
	if first {
		l.waitingSince = time.Now()
	}
	l.mu.Unlock()
	if !first {
		l.log.Debug(msg)
		return
	}
	l.log.Info("jetstream waits for another NATS server to route to: plain NATS works; JetStream (the job queue) starts once a second server joins",
		"nats_server_says", msg)
}

// isNewMetaLeader says whether a nats-server notice reports a JetStream
// meta leader elected: "Self is new JetStream cluster metadata leader" or
// "JetStream cluster new metadata leader: NAME" (also "new remote metadata
// leader"), not "JetStream cluster no metadata leader".
func isNewMetaLeader(msg string) bool {
	return strings.Contains(msg, "new JetStream cluster metadata leader") ||
		strings.HasPrefix(msg, "JetStream cluster new ") && strings.Contains(msg, "metadata leader")
}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.fatal = msg
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}

func (l *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, routeDialFailed) {
		l.log.Warn(msg)
		return
	}
	l.log.Error(msg)
}

// routeDialFailed begins nats-server's error when it cannot reach a route
// it was given: a peer store node that is down, killed or not started yet.
// That is the fault a stack is there to show, not a failure of this
// server, which keeps retrying and routes again when the peer is back: it
// is logged as a warning.
const routeDialFailed = "Error trying to connect to route"

func (l *natsLogger) Debugf(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

func (l *natsLogger) Tracef(format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...), "trace", true)
}

// lastFatal returns the last message given to Fatalf, or "".
func (l *natsLogger) lastFatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// debugEnabled says whether the handler keeps debug lines, so nats-server
// does not format debug lines nobody reads.
func debugEnabled(log *slog.Logger) bool {
	return log.Enabled(context.Background(), slog.LevelDebug)
}

// discardLogger returns l, or a logger that drops everything when l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
