package cluster

import (
	"context"
	"log/slog"
)

func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }

// recordHandler captures debug records and memberlist's level attribute.
type recordHandler struct {
	record func(msg, level string)
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	level := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "memberlist_level" {
			level = a.Value.String()
		}
		return true
	})
	if r.Level != slog.LevelDebug {
		level = "not-debug:" + level
	}
	h.record(r.Message, level)
	return nil
}

func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }
