package imports

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"tandem/statestore"
)

// Import statuses.
const (
	Waiting     = "waiting"     // created; its data has not been sent yet
	Running     = "running"     // rows are being imported
	Completed   = "completed"   // every row was read: imported or reported as failed
	Interrupted = "interrupted" // the data stopped before its end; send it again to resume
	Aborted     = "aborted"     // more rows failed than maxErrors allowed
	Failed      = "failed"      // the file could not be read at all (no header, a mapped column missing…)
)

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate]: the imports (one row each, with progress and
// resume point) and their row errors.
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "imports",
		Version: 1,
		SQL: `
CREATE TABLE imports (
	id TEXT PRIMARY KEY,
	source_id TEXT NOT NULL,
	run_key TEXT NOT NULL,
	format TEXT NOT NULL,
	mapping TEXT NOT NULL,
	delimiter TEXT NOT NULL,
	encoding TEXT NOT NULL,
	max_errors BIGINT NOT NULL,
	status TEXT NOT NULL,
	attempts BIGINT NOT NULL,
	rows_imported BIGINT NOT NULL,
	rows_failed BIGINT NOT NULL,
	rows_skipped BIGINT NOT NULL,
	bytes_total BIGINT NOT NULL,
	resume_line BIGINT NOT NULL,
	resume_offset BIGINT NOT NULL,
	resume_crc BIGINT NOT NULL,
	error_code TEXT NOT NULL,
	error_message TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	started_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	finished_at BIGINT NOT NULL
);
CREATE INDEX imports_run_key ON imports (source_id, run_key, created_at);
CREATE TABLE import_errors (
	import_id TEXT NOT NULL,
	line BIGINT NOT NULL,
	column_name TEXT NOT NULL,
	code TEXT NOT NULL,
	message TEXT NOT NULL,
	message_id TEXT NOT NULL,
	PRIMARY KEY (import_id, line)
);
`,
	}}
}

// record is an import's row in the state store.
type record struct {
	ID, SourceID, RunKey, Format, Mapping, Delimiter, Encoding string
	MaxErrors                                                  int64
	Status                                                     string
	Attempts                                                   int64
	Imported, Failed, Skipped, BytesTotal                      int64
	ResumeLine, ResumeOffset                                   int64
	ResumeCRC                                                  uint64
	ErrCode, ErrMessage, CreatedBy                             string
	CreatedAt, StartedAt, UpdatedAt, FinishedAt                time.Time
}

const recordColumns = `id, source_id, run_key, format, mapping, delimiter, encoding, max_errors, status, attempts,
	rows_imported, rows_failed, rows_skipped, bytes_total, resume_line, resume_offset, resume_crc,
	error_code, error_message, created_by, created_at, started_at, updated_at, finished_at`

type scanner interface{ Scan(dest ...any) error }

func scanRecord(s scanner) (record, error) {
	var r record
	var crc, created, started, updated, finished int64
	err := s.Scan(&r.ID, &r.SourceID, &r.RunKey, &r.Format, &r.Mapping, &r.Delimiter, &r.Encoding, &r.MaxErrors,
		&r.Status, &r.Attempts, &r.Imported, &r.Failed, &r.Skipped, &r.BytesTotal, &r.ResumeLine, &r.ResumeOffset,
		&crc, &r.ErrCode, &r.ErrMessage, &r.CreatedBy, &created, &started, &updated, &finished)
	r.ResumeCRC = uint64(crc)
	r.CreatedAt = statestore.TimeFromDB(created)
	r.StartedAt = statestore.TimeFromDB(started)
	r.UpdatedAt = statestore.TimeFromDB(updated)
	r.FinishedAt = statestore.TimeFromDB(finished)
	return r, err
}

type store struct{ db *statestore.DB }

func (s store) insert(ctx context.Context, r record) error {
	_, err := s.db.Exec(ctx, `INSERT INTO imports (`+recordColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.SourceID, r.RunKey, r.Format, r.Mapping, r.Delimiter, r.Encoding, r.MaxErrors, r.Status, r.Attempts,
		r.Imported, r.Failed, r.Skipped, r.BytesTotal, r.ResumeLine, r.ResumeOffset, int64(r.ResumeCRC),
		r.ErrCode, r.ErrMessage, r.CreatedBy, statestore.TimeToDB(r.CreatedAt), statestore.TimeToDB(r.StartedAt),
		statestore.TimeToDB(r.UpdatedAt), statestore.TimeToDB(r.FinishedAt))
	if err != nil {
		return fmt.Errorf("imports: create %s: %w", r.ID, err)
	}
	return nil
}

func (s store) get(ctx context.Context, id string) (record, error) {
	r, err := scanRecord(s.db.QueryRow(ctx, `SELECT `+recordColumns+` FROM imports WHERE id = ?`, id))
	if err != nil {
		return r, fmt.Errorf("imports: get %q: %w", id, err)
	}
	return r, nil
}

// byKey returns the newest import of source with run key, if any.
func (s store) byKey(ctx context.Context, sourceID, key string) (record, bool, error) {
	r, err := scanRecord(s.db.QueryRow(ctx, `SELECT `+recordColumns+` FROM imports
		WHERE source_id = ? AND run_key = ? ORDER BY created_at DESC LIMIT 1`, sourceID, key))
	if err != nil {
		if isNotFound(err) {
			return r, false, nil
		}
		return r, false, fmt.Errorf("imports: find by key: %w", err)
	}
	return r, true, nil
}

// saveProgress writes an import's counters, resume point and status.
func (s store) saveProgress(ctx context.Context, r record) error {
	_, err := s.db.Exec(ctx, `UPDATE imports SET status = ?, attempts = ?, rows_imported = ?, rows_failed = ?,
		rows_skipped = ?, bytes_total = ?, max_errors = ?, resume_line = ?, resume_offset = ?, resume_crc = ?, error_code = ?, error_message = ?,
		started_at = ?, updated_at = ?, finished_at = ? WHERE id = ?`,
		r.Status, r.Attempts, r.Imported, r.Failed, r.Skipped, r.BytesTotal, r.MaxErrors, r.ResumeLine, r.ResumeOffset,
		int64(r.ResumeCRC), r.ErrCode, r.ErrMessage, statestore.TimeToDB(r.StartedAt), statestore.TimeToDB(r.UpdatedAt),
		statestore.TimeToDB(r.FinishedAt), r.ID)
	if err != nil {
		return fmt.Errorf("imports: save progress of %s: %w", r.ID, err)
	}
	return nil
}

// addErrors records row errors; a row already recorded (after a resume)
// is kept as first recorded.
func (s store) addErrors(ctx context.Context, id string, errs []RowError) error {
	if len(errs) == 0 {
		return nil
	}
	err := s.db.Tx(ctx, func(tx *statestore.Tx) error {
		for start := 0; start < len(errs); start += 100 {
			end := min(start+100, len(errs))
			var q strings.Builder
			q.WriteString(`INSERT INTO import_errors (import_id, line, column_name, code, message, message_id) VALUES `)
			args := make([]any, 0, 6*(end-start))
			for i, e := range errs[start:end] {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, ?, ?, ?, ?)")
				args = append(args, id, e.Line, cleanText(e.Column), e.Code, cleanText(e.Message), e.MessageID)
			}
			q.WriteString(` ON CONFLICT (import_id, line) DO NOTHING`)
			if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("imports: record %d row errors of %s: %w", len(errs), id, err)
	}
	return nil
}

// clearErrors forgets an import's row errors (for a restart).
func (s store) clearErrors(ctx context.Context, id string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM import_errors WHERE import_id = ?`, id); err != nil {
		return fmt.Errorf("imports: clear errors of %s: %w", id, err)
	}
	return nil
}

// errors lists an import's row errors by line, after cursor.
func (s store) errors(ctx context.Context, id string, limit int, cursor string) ([]RowError, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("imports: errors: %w", err)
	}
	from := int64(-1)
	if after != nil {
		if from, err = strconv.ParseInt(after[0], 10, 64); err != nil {
			return nil, "", fmt.Errorf("imports: errors: %w", &statestore.FieldError{Field: "cursor", Message: "not a cursor this list issued", Err: statestore.ErrBadCursor})
		}
	}
	rows, err := s.db.Query(ctx, `SELECT line, column_name, code, message, message_id FROM import_errors
		WHERE import_id = ? AND line > ? ORDER BY line LIMIT ?`, id, from, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("imports: errors: %w", err)
	}
	defer rows.Close()
	out := []RowError{}
	for rows.Next() {
		var e RowError
		if err := rows.Scan(&e.Line, &e.Column, &e.Code, &e.Message, &e.MessageID); err != nil {
			return nil, "", fmt.Errorf("imports: errors: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("imports: errors: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = statestore.EncodeCursor(strconv.Itoa(out[limit-1].Line))
	}
	return out, next, nil
}

// cleanText makes s storable in any backend's text column.
func cleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
