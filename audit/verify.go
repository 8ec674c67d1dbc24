package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"tandem/statestore"
)

// Kinds of break [Log.Verify] reports.
const (
	Edited    = "edited"    // the entry's content does not match its hash
	Deleted   = "deleted"   // entries are missing: a gap in the sequence, or the end cut off
	Reordered = "reordered" // the entry is not where it was written, or does not link to the one before
)

// Break is the first place the chain is broken.
type Break struct {
	Seq     int64  `json:"seq"`     // the first entry found broken (for a deletion, the first missing one)
	Kind    string `json:"kind"`    // Edited, Deleted or Reordered
	Message string `json:"message"` // what is wrong, for people
}

func (b *Break) Error() string { return fmt.Sprintf("entry %d %s: %s", b.Seq, b.Kind, b.Message) }

// Report is the result of [Log.Verify].
type Report struct {
	Entries int64  `json:"entries"` // entries checked
	Head    int64  `json:"head"`    // the sequence number of the last entry, by the head
	Hash    string `json:"hash"`    // the head's hash: note it to detect a rewritten tail later
	Broken  *Break `json:"broken,omitempty"`
}

// verifyPage is how many entries Verify reads per query.
const verifyPage = 1000

// Verify walks the chain from the first entry to the head as it is when
// Verify starts (entries appended meanwhile are left for the next run) and
// reports the first broken entry, if any, in Report.Broken. progress, if
// not nil, is called after each page with the entries checked so far and
// the total. An error means the chain could not be read, not that it is
// broken.
func (l *Log) Verify(ctx context.Context, progress func(done, total int64)) (Report, error) {
	var rep Report
	// The head first: entries up to it were committed with it.
	if err := l.db.QueryRow(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&rep.Head, &rep.Hash); err != nil {
		return rep, fmt.Errorf("audit: verify: read the head: %w", err)
	}
	prevSeq, prevHash := int64(0), Genesis
	for {
		rows, err := l.raw(ctx, `SELECT `+columns+` FROM audit_entries WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`,
			prevSeq, rep.Head, verifyPage)
		if err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		for _, e := range rows {
			if b := l.check(ctx, e, prevSeq, prevHash); b != nil {
				rep.Broken = b
				return rep, nil
			}
			rep.Entries++
			prevSeq, prevHash = e.Seq, e.Hash
		}
		if progress != nil {
			progress(rep.Entries, rep.Head)
		}
		if len(rows) < verifyPage {
			break
		}
	}
	switch {
	case prevSeq < rep.Head:
		rep.Broken = &Break{Seq: prevSeq + 1, Kind: Deleted,
			Message: fmt.Sprintf("the log's head is at entry %d but the last entry is %d: entries %d to %d were deleted", rep.Head, prevSeq, prevSeq+1, rep.Head)}
	case prevHash != rep.Hash:
		rep.Broken = &Break{Seq: prevSeq, Kind: Edited,
			Message: "the last entry's hash is not the one the log's head recorded: the entry was rewritten, or the head moved back"}
	}
	return rep, nil
}

// check returns what is wrong with e, coming after the entry prevSeq with
// hash prevHash, or nil.
func (l *Log) check(ctx context.Context, e Entry, prevSeq int64, prevHash string) *Break {
	if e.Seq != prevSeq+1 {
		return &Break{Seq: prevSeq + 1, Kind: Deleted,
			Message: fmt.Sprintf("entries %d to %d are missing (the next entry is %d)", prevSeq+1, e.Seq-1, e.Seq)}
	}
	if Hash(e) != e.Hash {
		// A moved entry still matches its hash at the position it was
		// written at.
		if at, ok := l.writtenAt(ctx, e); ok && at != e.Seq {
			return &Break{Seq: e.Seq, Kind: Reordered,
				Message: fmt.Sprintf("this entry was written as entry %d", at)}
		}
		return &Break{Seq: e.Seq, Kind: Edited, Message: "its content does not match its hash: it was changed after it was written"}
	}
	if e.PrevHash != prevHash {
		return &Break{Seq: e.Seq, Kind: Reordered,
			Message: fmt.Sprintf("its prevHash is not the hash of entry %d: entries were reordered, or entry %d was replaced", prevSeq, prevSeq)}
	}
	return nil
}

// maxShift bounds how far from its place Verify looks for where a moved
// entry was written (some twenty thousand hashes, a few milliseconds,
// and only for an entry already found broken).
const maxShift = 10_000

// writtenAt finds the sequence number near e.Seq that e hashes correctly
// at, if any: the position it was written at, before it was moved.
func (l *Log) writtenAt(_ context.Context, e Entry) (int64, bool) {
	moved := e
	for d := int64(1); d <= maxShift; d++ {
		for _, s := range []int64{e.Seq - d, e.Seq + d} {
			if s < 1 {
				continue
			}
			moved.Seq = s
			if Hash(moved) == e.Hash {
				return s, true
			}
		}
	}
	return 0, false
}

// raw reads entries with their payloads exactly as stored.
func (l *Log) raw(ctx context.Context, q string, args ...any) ([]Entry, error) {
	rows, err := l.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var entries []Entry
	for rows.Next() {
		var e Entry
		var at int64
		var before, after string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Resource, &e.Subject, &e.ChangeRequest,
			&before, &after, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.At = statestore.TimeFromDB(at)
		e.Before, e.After = json.RawMessage(before), json.RawMessage(after)
		entries = append(entries, e)
	}
	return entries, rows.Err()
}

// Exists reports whether the audit log's migrations were applied to db:
// `tandem audit verify` checks before reading, and never migrates.
func Exists(ctx context.Context, db *statestore.DB) (bool, error) {
	v, err := db.AppliedVersion(ctx, "audit")
	if err != nil {
		return false, err
	}
	return v > 0, nil
}
