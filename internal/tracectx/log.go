package tracectx

import (
	"context"
	"log/slog"
)

// Keys of the attributes Handler adds.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// Handler adds trace_id and span_id to every record logged with a context
// that carries a span (slog's *Context methods, or LogAttrs), so that
// `grep TRACE_ID` finds a request's lines on every node. Records logged
// without such a context pass unchanged.
type Handler struct{ inner slog.Handler }

// NewHandler wraps h. A Handler given a Handler is returned as it is, so a
// role may wrap the logger it was given whether or not its node did.
func NewHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(Handler); ok {
		return h
	}
	return Handler{inner: h}
}

// WithLogger returns l with its handler wrapped by NewHandler.
func WithLogger(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(Handler); ok {
		return l
	}
	return slog.New(NewHandler(l.Handler()))
}

func (h Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc, ok := FromContext(ctx); ok {
			r.AddAttrs(slog.String(LogTraceID, sc.TraceID.String()), slog.String(LogSpanID, sc.SpanID.String()))
		}
	}
	return h.inner.Handle(ctx, r)
}

func (h Handler) WithAttrs(as []slog.Attr) slog.Handler { return Handler{inner: h.inner.WithAttrs(as)} }

// WithGroup opens a group; the trace attributes of later records land in
// it, like any attribute added after the group.
func (h Handler) WithGroup(name string) slog.Handler { return Handler{inner: h.inner.WithGroup(name)} }
