package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"

	duckdbdriver "github.com/duckdb/duckdb-go/v2"
)

// WriteKeyIndex writes the dedup key index of the closed event store in the
// database file path in one pass, from the keys (source, messageId) of all
// its events, instead of the rebuild from the table that the next Open
// would otherwise do (a scan of key_hash per 4 million events: ten minutes
// at 100 million). It is for stores whose rows were written in SQL, as
// `tandem bench dedup` fills a window, by a caller that knows their keys.
//
// The result is what that rebuild writes: one run of the sorted, distinct
// hashes, under the token the database already names (the store must have
// been opened once, which creates both). sizeHint is the number of keys,
// or 0. It refuses (and changes nothing) when the database names another
// index or the keys' count could not cover the table's rows; keys the
// caller gets wrong beyond that are not detected, so it is no tool for a
// node's data directory.
func WriteKeyIndex(path string, sizeHint int, keys iter.Seq2[string, string]) error {
	file, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	dir := indexDir(file)
	tok, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: write key index: %w (open the store once first)", err)
	}
	dbToken, rows, err := readIndexToken(file)
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: write key index: %w", err)
	}
	if dbToken != string(tok) {
		return errors.New("eventstore/duckdb: write key index: the database names another index")
	}

	hs := make([]uint64, 0, sizeHint)
	var buf []byte
	for src, msg := range keys {
		var h uint64
		h, buf = keyHash(buf, src, msg)
		hs = append(hs, h)
	}
	slices.Sort(hs)
	hs = slices.Compact(hs)
	if !coversTable(int64(len(hs)), rows, openOptions{indexMask: ^uint64(0), flushLen: defaultFlushLen}) {
		return fmt.Errorf("eventstore/duckdb: write key index: %d distinct keys for %d rows", len(hs), rows)
	}

	// As rebuildKeyIndex: the directory holds the token and one run.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != tokenFile {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	w, err := newRunWriter(dir, 1, 1, len(hs))
	if err != nil {
		return err
	}
	for _, h := range hs {
		if err := w.put(h); err != nil {
			w.abort()
			return err
		}
	}
	r, err := w.finish()
	if err != nil {
		return err
	}
	r.close()
	return nil
}

// readIndexToken returns the index token the closed database file names
// and its number of events.
func readIndexToken(file string) (token string, rows int64, err error) {
	connector, err := duckdbdriver.NewConnector(file, nil)
	if err != nil {
		return "", 0, err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx := context.Background()
	switch err := db.QueryRowContext(ctx, `SELECT token FROM dedup_index LIMIT 1`).Scan(&token); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return "", 0, err
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&rows); err != nil {
		return "", 0, err
	}
	return token, rows, nil
}
