package duckdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Why an erasure rewrites the database file
//
// DuckDB has no secure delete: a DELETE marks rows deleted and a
// CHECKPOINT writes the row groups that hold them anew into free blocks,
// but the blocks the old row groups used are only put on the free list,
// to be reused by later writes, not wiped. The erased values stay readable
// in the file until then. So after an erasure's DELETE the store copies
// every table into a fresh file (COPY FROM DATABASE, which writes only
// live rows), and replaces the old file by it: the old file is removed,
// and with it every block of the erased rows.
//
// The database file is attached to an in-memory database as catalog
// fileCatalog (see open), and each connection uses it by default. The
// replacement detaches that catalog, renames the fresh file over the old
// one, and attaches it again under the same name, so the pooled
// connections and the analytics backends, which share the store's handle,
// go on with the new file. Writers (wmu) and the store's reads (swap)
// wait meanwhile; a query of the analytics backends that runs exactly
// then may fail once.

// fileCatalog is the name the database file is attached under.
const fileCatalog = "events_db"

// compactCatalog is the name of the fresh file while it is written.
const compactCatalog = "events_compact"

// detachWait bounds how long compact waits for queries still reading the
// old file before it can attach the new one.
const detachWait = 10 * time.Second

// quote returns s as a SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Compact replaces the database file by a copy of its live rows, so that
// rows deleted earlier are gone from the disk (for a deletion other than
// Erase's, such as retention's). It shares a compaction with erasures
// running at the same time.
func (s *Store) Compact(ctx context.Context) error {
	return s.compactAfter(ctx, s.erased.Add(1))
}

// compactAfter makes sure a compaction that started after the erasure
// numbered gen (a value of s.erased) has completed: concurrent erasures
// share one compaction.
func (s *Store) compactAfter(ctx context.Context, gen uint64) error {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.compacted >= gen {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.lmu.Lock() // profile links are written under lmu alone
	defer s.lmu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	upTo := s.erased.Load()
	s.flushStaged()
	defer s.countRows(context.WithoutCancel(ctx)) //nolint:errcheck // only a hint for Stage
	if err := s.compact(ctx); err != nil {
		return err
	}
	s.compacted = upTo
	return nil
}

// compact replaces the database file by a copy of its live rows. The
// caller holds wmu and lmu. An in-memory store has nothing to compact.
func (s *Store) compact(ctx context.Context) error {
	if s.file == "" {
		return nil
	}
	tmp := s.file + ".compact"
	for _, f := range []string{tmp, tmp + ".wal"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("eventstore/duckdb: compact: %w", err)
		}
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: compact: %w", err)
	}
	defer conn.Close()
	exec := func(q string) error {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("eventstore/duckdb: compact: %s: %w", strings.Fields(q)[0], err)
		}
		return nil
	}
	// The write-ahead log into the file first: the copy reads the file,
	// and nothing is left to write to the old file once it is detached.
	if err := exec("CHECKPOINT " + fileCatalog); err != nil {
		return err
	}
	if err := exec("ATTACH " + quote(tmp) + " AS " + compactCatalog); err != nil {
		return err
	}
	if err := exec("COPY FROM DATABASE " + fileCatalog + " TO " + compactCatalog); err != nil {
		_ = exec("DETACH " + compactCatalog)
		_ = os.Remove(tmp)
		return err
	}
	if err := exec("DETACH " + compactCatalog); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("eventstore/duckdb: compact: %w", err)
	}
	// Swap: detach the old file, put the copy in its place, attach it
	// again under the same name. The store's reads wait meanwhile.
	s.swap.Lock()
	defer s.swap.Unlock()
	if err := exec("USE memory"); err != nil {
		return err
	}
	if err := exec("DETACH " + fileCatalog); err != nil {
		_ = exec("USE " + fileCatalog)
		return err
	}
	renameErr := os.Rename(tmp, s.file)
	if renameErr == nil {
		renameErr = syncFile(filepath.Dir(s.file))
	}
	// Attach what is at the path now (the copy, or the old file if the
	// rename failed): the store must go on either way. A query of the
	// analytics backends still reading the old file keeps it open, and
	// DuckDB refuses to attach the path again until it is done.
	deadline := time.Now().Add(detachWait)
	for {
		err := exec("ATTACH IF NOT EXISTS " + quote(s.file) + " AS " + fileCatalog)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := exec("USE " + fileCatalog); err != nil {
		return err
	}
	if renameErr != nil {
		return fmt.Errorf("eventstore/duckdb: compact: %w", renameErr)
	}
	return nil
}

// syncFile fsyncs the file or directory at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
