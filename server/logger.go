package server

import (
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
