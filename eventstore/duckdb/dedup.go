package duckdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
)

// The dedup of the Store: the in-memory filter (fpSet, s.keys) of the
// stored keys' fingerprints, and the exact on-disk index (keyIndex,
// s.index) of their key_hash. Append and Stage call two methods:
// maybeStored, for the hashes of a batch that may be stored (to be checked
// against the table), and addKeys, before the rows of new keys commit.

// indexHeld is the memory the open key indexes hold (recent hashes and
// run fences), counted into [FilterBytes].
var indexHeld atomic.Int64

// maybeStored returns the hashes of batch whose key may be stored: those
// in the filter and then in the exact index. Only these need the check
// against the table (a true duplicate, a key erased or expired since, or a
// 64-bit collision). The caller holds wmu.
func (s *Store) maybeStored(batch []*pending) ([]uint64, error) {
	var maybe []uint64
	for _, p := range batch {
		if s.keys.mayContain(p.hash) {
			maybe = append(maybe, p.hash)
		}
	}
	if len(maybe) == 0 {
		return nil, nil
	}
	s.filterHits.Add(int64(len(maybe)))
	before := s.index.reads
	hits, err := s.index.containsAny(maybe)
	s.indexReads.Add(s.index.reads - before)
	return hits, err
}

// recentRows is how many of the table's newest rows the exact check
// against the table reads first (see storedKeys): 8 MiB of key_hash, a few
// milliseconds.
const recentRows = 1 << 20

// storedKeys returns the keys of batch that are stored, among those whose
// hash is in maybe (the index's hits: true duplicates, keys of erased or
// expired events, 64-bit collisions). It looks among the newest rows
// first (rowid at least tableRows - recentRows: DuckDB skips the other row
// groups; rows staged in conn's transaction have rowids above any
// committed one), then among the older rows for the keys not found there.
// Duplicates are mostly of recent events (a pipeline's redelivery after a
// crash, a client's retry), and a scan of the whole key_hash column takes
// seconds at 100 million events and fills DuckDB's buffer pool (about 125
// MiB resident at the default limit). A key whose hash is among the
// newest rows under another key (a collision) is still looked for among
// the older ones. The caller holds wmu.
func (s *Store) storedKeys(ctx context.Context, conn *sql.Conn, batch []*pending, maybe []uint64) (map[key]struct{}, error) {
	stored := make(map[key]struct{}, len(maybe))
	lo := max(s.tableRows-s.recentRows, 0)
	if err := s.queryStored(ctx, conn, fmt.Sprintf("rowid >= %d", lo), maybe, stored); err != nil || lo == 0 {
		return stored, err
	}
	hit := make(map[uint64]bool, len(maybe))
	for _, h := range maybe {
		hit[h] = true
	}
	var rest []uint64
	for _, p := range batch {
		if _, ok := stored[key{p.src, p.msg}]; !ok && hit[p.hash] {
			rest = append(rest, p.hash)
			hit[p.hash] = false // once
		}
	}
	if len(rest) == 0 {
		return stored, nil
	}
	return stored, s.queryStored(ctx, conn, fmt.Sprintf("rowid < %d", lo), rest, stored)
}

// queryStored adds to stored the keys of the rows matching cond whose
// key_hash is one of hashes.
func (s *Store) queryStored(ctx context.Context, conn *sql.Conn, cond string, hashes []uint64, stored map[key]struct{}) error {
	s.checkBatches.Add(1)
	// The condition on rowid in the SQL text, not a parameter: DuckDB
	// prunes row groups by a constant only.
	rows, err := conn.QueryContext(ctx,
		`SELECT source_id, message_id FROM events WHERE `+cond+` AND key_hash IN (SELECT unnest(?::UBIGINT[]))`, hashes)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.src, &k.msg); err != nil {
			return err
		}
		stored[k] = struct{}{}
	}
	return rows.Err()
}

// addKeys records the keys of rows, about to be committed, in the index
// and in the filter; with sync, durably (else syncKeys must run before the
// commit: see keyIndex). After an error the rows must not be committed.
// The caller holds wmu.
func (s *Store) addKeys(rows []*pending, sync bool) error {
	hs := make([]uint64, len(rows))
	for i, p := range rows {
		hs[i] = p.hash
	}
	err := s.index.add(hs)
	if err == nil && sync {
		err = s.index.sync()
	}
	s.accountIndex()
	if err != nil {
		return err
	}
	for _, h := range hs {
		s.keys.add(h)
	}
	return nil
}

// syncKeys makes the hashes added to the index durable: every writer
// calls it before it commits rows of new keys. The caller holds wmu.
func (s *Store) syncKeys() error {
	if s.index == nil {
		return nil
	}
	return s.index.sync()
}

// accountIndex brings the index's memory in [FilterBytes] up to date.
func (s *Store) accountIndex() {
	b := s.index.bytes()
	indexHeld.Add(b - s.indexCounted)
	s.indexCounted = b
}

// openDedup opens the key index (rebuilding it from the events table when
// it may not cover the table: see coversTable) and builds the filter from
// it. The caller is init.
func (s *Store) openDedup(ctx context.Context, o openOptions) error {
	var rows int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&rows); err != nil {
		return fmt.Errorf("dedup: count events: %w", err)
	}
	var dbToken string
	switch err := s.db.QueryRowContext(ctx, `SELECT token FROM dedup_index LIMIT 1`).Scan(&dbToken); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("dedup: read index token: %w", err)
	}
	dir := ""
	var x *keyIndex
	if s.file != "" {
		dir = indexDir(s.file)
		tok, err := os.ReadFile(filepath.Join(dir, tokenFile))
		if err == nil && dbToken != "" && string(tok) == dbToken {
			if x, err = openKeyIndex(dir, o.indexMask, o.flushLen); err != nil {
				return fmt.Errorf("dedup: open index: %w", err)
			}
			if !coversTable(x.count(), rows, o) {
				x.close()
				x = nil
			}
		}
	}
	if x == nil {
		var err error
		if x, err = rebuildKeyIndex(ctx, s, dir, rows, o); err != nil {
			return fmt.Errorf("dedup: rebuild index: %w", err)
		}
		s.indexRebuilt = true
	}
	s.index = x
	keys := newFPSet(s.fpWidth)
	keys.mask = o.fpMask
	if err := x.each(int(min(o.loadChunk, rows+1)), keys.load); err != nil {
		keys.release()
		x.close()
		return fmt.Errorf("dedup: load filter: %w", err)
	}
	s.keys = keys
	s.accountIndex()
	if rows > o.loadChunk {
		// Give the load's garbage back to the system now rather than to
		// the scavenger, over minutes: the node's resident memory is what
		// operators watch.
		debug.FreeOSMemory()
	}
	return nil
}

// tokenFile is the file of the index directory naming the database it
// covers: the token in the database's dedup_index table.
const tokenFile = "token"

// coversTable reports whether an index of n hashes, with the right token,
// may be used for a table of rows events. The token rules out an index of
// another database and, with the migration that created its table, older
// builds writing events; the counts catch the rest that they can: fewer
// hashes than rows means stored keys are missing (a data directory
// restored in parts, say; one or two 64-bit collisions among the keys are
// allowed for), many more means mostly keys of erased or expired events,
// which cost an exact check each if sent again, so the index is rebuilt
// without them. Tests that mask the index's hashes skip the counts.
func coversTable(n, rows int64, o openOptions) bool {
	if o.indexMask != ^uint64(0) {
		return true
	}
	return n+1+rows>>24 >= rows && n <= 2*rows+int64(o.flushLen)
}

// rebuildKeyIndex replaces the index in dir by one run of the table's
// key_hash, of which there are about rows (see writeTableKeys), records its token in dir and in the
// database, and opens it. A crash before the database has the token leaves an index
// that the next open rebuilds again.
func rebuildKeyIndex(ctx context.Context, s *Store, dir string, rows int64, o openOptions) (*keyIndex, error) {
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	w, err := newRunWriter(dir, 1, 1, 0)
	if err != nil {
		return nil, err
	}
	if err := writeTableKeys(ctx, s, rows, o, w); err != nil {
		w.abort()
		return nil, err
	}
	r, err := w.finish()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		x, err := openKeyIndex("", o.indexMask, o.flushLen)
		if err != nil {
			return nil, err
		}
		x.seq, x.recentLo = 2, 2
		if r.n > 0 {
			x.runs = []*keyRun{r}
		}
		return x, nil
	}
	r.close()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(b[:])
	if err := writeFileSynced(filepath.Join(dir, tokenFile), []byte(token)); err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM dedup_index`); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dedup_index (token) VALUES (?)`, token); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return openKeyIndex(dir, o.indexMask, o.flushLen)
}

// writeTableKeys writes the table's key_hash, masked, in order, to w. It
// reads them in ranges of the top 16 bits of about o.rebuildChunk hashes,
// one scan of the column each, and sorts each range in Go: DuckDB's
// driver materializes a query's whole result, so one query of every
// key_hash would hold them all in DuckDB's memory (800 MB at 100 million),
// and an ORDER BY would add its sort's.
func writeTableKeys(ctx context.Context, s *Store, rows int64, o openOptions, w *runWriter) error {
	const nparts = 1 << partBits
	ranges := min(max(1, (rows+int64(o.rebuildChunk)-1)/int64(o.rebuildChunk)), nparts)
	buf := make([]uint64, 0, rows/ranges+rows/ranges/8+1024)
	q := fmt.Sprintf(`SELECT key_hash FROM events WHERE (key_hash >> %d) >= ? AND (key_hash >> %d) < ?`, 64-partBits, 64-partBits)
	for r := range ranges {
		lo, hi := r*nparts/ranges, (r+1)*nparts/ranges
		res, err := s.db.QueryContext(ctx, q, lo, hi)
		if err != nil {
			return err
		}
		buf = buf[:0]
		for res.Next() {
			var h uint64
			if err := res.Scan(&h); err != nil {
				res.Close()
				return err
			}
			buf = append(buf, h&o.indexMask)
		}
		err = res.Err()
		res.Close()
		if err != nil {
			return err
		}
		// The mask keeps the top bits: the ranges stay in order.
		slices.Sort(buf)
		for _, h := range buf {
			if err := w.put(h); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFileSynced writes a file durably (through a temporary file).
func writeFileSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

// closeDedup releases the filter and closes the index. The caller holds
// wmu.
func (s *Store) closeDedup() {
	if s.keys != nil {
		s.keys.release()
		s.keys = nil
	}
	if s.index != nil {
		s.index.close()
		indexHeld.Add(-s.indexCounted)
		s.indexCounted = 0
		s.index = nil
	}
}
