package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"

	"tandem/event"
	"tandem/eventstore"
)

// rowGroupSize is DuckDB's row group size (rows): a transaction that
// appends at least this many rows to a table without indexes writes them
// straight to the database file as compressed row groups, and the
// write-ahead log records only where they are. Smaller transactions write
// their rows to the WAL and, at the next checkpoint, again, compressed,
// into the file: measured on the 2-core machine with 600,000 events,
// commits of 20,000 rows cost 9.1-9.7 CPU µs an event plus 2-3.5 µs at the
// checkpoint, commits of 122,880 rows 8.5-8.8 µs and no checkpoint work.
// A commit of whole row groups matters: one that ends in a partial row
// group leaves it in the middle of the table, and the next checkpoint
// rewrites every row group after it to close the gap (3.8-5.3 µs an event
// measured), so Stage commits at the row-group boundaries of the table.
const rowGroupSize = 122_880

// RowGroupRows is the row group the store commits by itself while events
// are staged (see rowGroupSize): what a caller holding staged events for
// a cheaper commit waits to fill.
const RowGroupRows = rowGroupSize

var _ eventstore.Preparer = (*Store)(nil)

// stagedTx is the transaction Stage keeps open across calls; guarded by
// wmu.
type stagedTx struct {
	conn *sql.Conn
	tx   driver.Tx
	rows int // rows appended in it
	// inputs counts the events passed to Stage since the last commit.
	inputs int
}

// Stage appends events like [Store.Append], into a transaction it keeps
// open across calls, and commits whenever the table then ends on a row
// group boundary (see rowGroupSize); Commit, and every other writer of
// events (Append, Erase, Expire, compaction, Close), commit what is left.
// It returns how many events were new and how many of the events passed
// to Stage, the last ones, are not committed yet. After an error nothing
// staged since the last commit is stored. See [eventstore.Stager].
func (s *Store) Stage(ctx context.Context, events []event.Event) (n, left int, err error) {
	return s.stagePrepared(ctx, events, prepare(events))
}

// prepared is a batch of [Store.Prepare].
type prepared struct {
	events []event.Event
	batch  []*pending
	used   bool // stage reorders batch: a second use prepares again
}

func (p *prepared) Events() []event.Event { return p.events }

// Prepare does the work of staging events that depends on them alone
// (prepare: the key strings and their fingerprints, repeats within
// events, each event's facts); see [eventstore.Preparer].
func (s *Store) Prepare(events []event.Event) eventstore.Prepared {
	return &prepared{events: events, batch: prepare(events)}
}

// StagePrepared is [Store.Stage] of the events of p, which Prepare
// returned; see [eventstore.Preparer].
func (s *Store) StagePrepared(ctx context.Context, p eventstore.Prepared) (n, left int, err error) {
	pp, ok := p.(*prepared)
	if !ok || pp.used {
		return s.Stage(ctx, p.Events())
	}
	pp.used = true
	return s.stagePrepared(ctx, pp.events, pp.batch)
}

func (s *Store) stagePrepared(ctx context.Context, events []event.Event, batch []*pending) (n, left int, err error) {
	s.threads.yield(ctx) // reader priority (threads.go)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	if err := s.takeStagedErr(); err != nil {
		s.abortStaged()
		return 0, 0, fmt.Errorf("eventstore/duckdb: stage: %w", err)
	}
	if err = ctx.Err(); err == nil {
		n, left, err = s.stage(ctx, events, batch)
	}
	if err != nil {
		s.abortStaged()
		return 0, 0, fmt.Errorf("eventstore/duckdb: stage: %w", err)
	}
	return n, left, nil
}

func (s *Store) stage(ctx context.Context, events []event.Event, batch []*pending) (n, left int, err error) {
	if err := s.beginStaged(ctx); err != nil {
		return 0, 0, err
	}
	st := s.staged
	st.inputs += len(events)
	// Checked on the staged transaction's connection: it sees the rows
	// staged before, not yet committed.
	fresh, err := s.dropStored(ctx, st.conn, batch)
	if err != nil {
		return 0, 0, err
	}
	for len(fresh) > 0 {
		if err := s.beginStaged(ctx); err != nil {
			return 0, 0, err
		}
		st = s.staged
		room := s.groupRows - int((s.tableRows+int64(st.rows))%int64(s.groupRows))
		part := fresh[:min(room, len(fresh))]
		fresh = fresh[len(part):]
		// fresh is in the order of events: the events up to the last
		// one of part are stored, or stored before, once part commits.
		last := part[len(part)-1].idx
		slices.SortStableFunc(part, func(a, b *pending) int { return a.e.Timestamp.Compare(b.e.Timestamp) })
		if err := st.conn.Raw(func(dc any) error { return s.appendRows(ctx, dc.(driver.Conn), part) }); err != nil {
			return 0, 0, fmt.Errorf("append %d events: %w", len(part), err)
		}
		if err := s.addKeys(part, false); err != nil {
			return 0, 0, err
		}
		if err := s.addSources(part); err != nil {
			return 0, 0, err
		}
		st.rows += len(part)
		n += len(part)
		if len(part) == room {
			if err := s.commitStaged(); err != nil {
				return 0, 0, err
			}
			// The events after last that are not in fresh are stored
			// already: only fresh's are pending.
			if len(fresh) > 0 {
				if err := s.beginStaged(ctx); err != nil {
					return 0, 0, err
				}
				s.staged.inputs = len(events) - (last + 1)
			}
		}
	}
	if s.staged != nil && s.staged.rows == 0 {
		// Nothing new since the last commit: the events left are
		// duplicates of stored ones.
		s.abortStaged()
	}
	if s.staged == nil {
		return n, 0, nil
	}
	return n, s.staged.inputs, nil
}

// Commit commits the events Stage left uncommitted; see
// [eventstore.Stager].
func (s *Store) Commit(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.takeStagedErr(); err != nil {
		return fmt.Errorf("eventstore/duckdb: commit: %w", err)
	}
	if err := s.commitStaged(); err != nil {
		return fmt.Errorf("eventstore/duckdb: commit: %w", err)
	}
	return nil
}

// beginStaged opens the staged transaction if none is open. The caller
// holds wmu.
func (s *Store) beginStaged(ctx context.Context) error {
	if s.staged != nil {
		return nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	st := &stagedTx{conn: conn}
	// BEGIN without ctx, as in insert.
	err = conn.Raw(func(dc any) error {
		var err error
		st.tx, err = dc.(driver.ConnBeginTx).BeginTx(context.Background(), driver.TxOptions{})
		return err
	})
	if err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // always ErrBadConn
		conn.Close()
		return fmt.Errorf("begin: %w", err)
	}
	s.staged = st
	return nil
}

// commitStaged commits the staged transaction, if any. The caller holds
// wmu; every writer of events calls it first, so that its own work
// follows the staged events (a dedup check on another connection would
// not see them, an erasure would miss them).
func (s *Store) commitStaged() error {
	st := s.staged
	if st == nil {
		return nil
	}
	s.staged = nil
	// The staged keys' hashes durable in the dedup index first.
	err := s.syncKeys()
	if err == nil {
		err = st.tx.Commit()
	} else {
		_ = st.tx.Rollback()
	}
	if err != nil {
		err = fmt.Errorf("commit staged events: %w", err)
		st.conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // always ErrBadConn
	} else {
		s.tableRows += int64(st.rows)
	}
	st.conn.Close()
	return err
}

// abortStaged rolls the staged transaction back, if any. The caller holds
// wmu.
func (s *Store) abortStaged() {
	st := s.staged
	if st == nil {
		return
	}
	s.staged = nil
	rbErr := st.tx.Rollback()
	// After an error the connection's state is not trusted (see Append).
	st.conn.Raw(func(any) error { return driver.ErrBadConn }) //nolint:errcheck // always ErrBadConn
	st.conn.Close()
	_ = rbErr // the rows are gone either way
}

// flushStaged commits the staged events before another writer's work.
// If that fails, the writer goes on, and the next Stage or Commit reports
// that the staged events were lost. The caller holds wmu.
func (s *Store) flushStaged() {
	if err := s.commitStaged(); err != nil {
		s.stagedErr = errors.Join(s.stagedErr, err)
	}
}

// takeStagedErr returns and clears the error of a failed flushStaged.
func (s *Store) takeStagedErr() error {
	err := s.stagedErr
	s.stagedErr = nil
	return err
}
