package natsserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// natsLogger routes nats-server's printf-style log calls into slog. It
// implements nats-server's server.Logger.
//
// Fatalf does not exit the process, unlike nats-server's own logger: an
// embedded server failing (a taken port, say) must become an error from
// Open, not the end of the node. The last fatal message is kept for that.
type natsLogger struct {
	log *slog.Logger

	mu    sync.Mutex
	fatal string
}

func newNATSLogger(log *slog.Logger) *natsLogger {
	return &natsLogger{log: log}
}

func (l *natsLogger) Noticef(format string, v ...any) {
	l.log.Info(fmt.Sprintf(format, v...))
}

func (l *natsLogger) Warnf(format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	l.fatal = msg
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}

func (l *natsLogger) Errorf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
}

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
