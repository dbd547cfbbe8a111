package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// memberlistLog adapts memberlist's *log.Logger to slog. memberlist writes
// one line per call, "[LEVEL] memberlist: message". Every line goes out at
// debug level, with memberlist's own level as an attribute: memberlist logs
// expected events of failure detection (a killed node's failed pings) as
// errors, so its levels would flood an operator's log. The conditions that
// matter (a name conflict, a failed join, a member declared dead) are
// logged by this package itself at info or warn.
type memberlistLog struct {
	logger *slog.Logger
}

func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&memberlistLog{logger: l}, "", 0)
}

func (w *memberlistLog) Write(p []byte) (int, error) {
	n := len(p)
	if !w.logger.Enabled(context.Background(), slog.LevelDebug) {
		return n, nil
	}
	line := bytes.TrimRight(p, "\r\n")
	level := "INFO"
	if len(line) > 0 && line[0] == '[' {
		if end := bytes.IndexByte(line, ']'); end > 0 {
			level = string(line[1:end])
			line = bytes.TrimLeft(line[end+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.logger.Debug(string(line), "src", "memberlist", "memberlist_level", level)
	return n, nil
}
