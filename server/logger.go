package server

import (
	"context"
	"io"
	"log/slog"
)

// NewLogger returns the structured JSON logger tandem writes to stderr. By
// rule, nothing that is logged carries personal data or secrets: events,
// identifiers, tokens and write keys are never log attributes.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// quieter passes on only records at min or above: the embedded NATS server
// narrates its start-up at info level, which is noise in tandem's log.
type quieter struct {
	slog.Handler
	min slog.Level
}

func (q quieter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= q.min && q.Handler.Enabled(ctx, l)
}

func (q quieter) WithAttrs(as []slog.Attr) slog.Handler {
	return quieter{q.Handler.WithAttrs(as), q.min}
}

func (q quieter) WithGroup(name string) slog.Handler {
	return quieter{q.Handler.WithGroup(name), q.min}
}

// componentLogger is l for a component whose info-level chatter is dropped.
func componentLogger(l *slog.Logger, name string) *slog.Logger {
	return slog.New(quieter{l.Handler(), slog.LevelWarn}).With("component", name)
}
