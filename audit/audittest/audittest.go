// Package audittest is the test suite of package audit, run against any
// state store backend: by audit's own tests on every backend through
// statetest.Each.
package audittest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/audit"
	"tandem/statestore"
)

// Run runs the suite; open must return a new, empty database for each call.
func Run(t *testing.T, open func(t *testing.T) *statestore.DB) {
	t.Run("AppendChain", func(t *testing.T) { t.Parallel(); testAppendChain(t, open) })
	t.Run("List", func(t *testing.T) { t.Parallel(); testList(t, open) })
	t.Run("NoSecrets", func(t *testing.T) { t.Parallel(); testNoSecrets(t, open) })
	t.Run("Refused", func(t *testing.T) { t.Parallel(); testRefused(t, open) })
	t.Run("RolledBack", func(t *testing.T) { t.Parallel(); testRolledBack(t, open) })
	t.Run("Concurrent", func(t *testing.T) { t.Parallel(); testConcurrent(t, open) })
	t.Run("Tampering", func(t *testing.T) { t.Parallel(); testTampering(t, open) })
}

// NewLog returns a Log on a new database, migrated (twice: migrations are
// idempotent), and the database.
func NewLog(t *testing.T, open func(t *testing.T) *statestore.DB) (*audit.Log, *statestore.DB) {
	t.Helper()
	db := open(t)
	for range 2 {
		if err := db.Migrate(context.Background(), audit.Migrations()...); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return audit.New(db), db
}

// Fill appends n entries, by actors usr_0…usr_2 about profiles prf_0…prf_4.
func Fill(t *testing.T, l *audit.Log, n int) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for i := range n {
		es, err := l.Append(context.Background(), audit.Record{
			Actor: fmt.Sprintf("usr_%d", i%3), Action: "profile.read", Resource: fmt.Sprintf("profile/prf_%d", i%5),
			Subject: fmt.Sprintf("prf_%d", i%5), After: map[string]any{"i": i},
		})
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, es...)
	}
	return out
}

// MustVerify fails the test unless the chain is intact with n entries.
func MustVerify(t *testing.T, l *audit.Log, n int64) {
	t.Helper()
	rep, err := l.Verify(context.Background(), nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Broken != nil || rep.Entries != n || rep.Head != n {
		t.Fatalf("Verify = %+v (broken %v), want %d intact entries", rep, rep.Broken, n)
	}
}

func testAppendChain(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, _ := NewLog(t, open)
	MustVerify(t, l, 0)
	before := time.Now().Add(-time.Second)
	es, err := l.Append(ctx,
		audit.Record{Actor: "usr_a", Action: "source.create", Resource: "source/src_1", After: map[string]any{"name": "web", "monthlyCost": 12.5}},
		audit.Record{Actor: "usr_a", Action: "source.approval", Resource: "source/src_1", ChangeRequest: "chg_1",
			Before: map[string]string{"approval": "pending"}, After: map[string]string{"approval": "approved"}},
	)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	more := Fill(t, l, 3)
	es = append(es, more...)
	prev := audit.Genesis
	for i, e := range es {
		if e.Seq != int64(i+1) || e.PrevHash != prev || e.Hash != audit.Hash(e) || len(e.Hash) != 64 {
			t.Fatalf("entry %d = %+v: want seq %d linked to %s", i, e, i+1, prev)
		}
		if e.At.Before(before) || e.At.After(time.Now().Add(time.Second)) {
			t.Errorf("entry %d at %v", i, e.At)
		}
		prev = e.Hash
	}
	if string(es[0].Before) != "null" || string(es[0].After) != `{"monthlyCost":12.5,"name":"web"}` {
		t.Errorf("payloads %s %s, want null and canonical JSON", es[0].Before, es[0].After)
	}
	// What is read back is what was written, hashes included.
	got, _, err := l.List(ctx, audit.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(es) {
		t.Fatalf("List: %d entries, want %d", len(got), len(es))
	}
	for i := range got {
		a, _ := json.Marshal(got[i])
		b, _ := json.Marshal(es[i])
		if string(a) != string(b) || audit.Hash(got[i]) != got[i].Hash {
			t.Errorf("entry %d read back as %s, written as %s", i, a, b)
		}
	}
	if got[1].ChangeRequest != "chg_1" {
		t.Errorf("change request %q", got[1].ChangeRequest)
	}
	// Progress is reported up to the total.
	var last [2]int64
	if _, err := l.Verify(ctx, func(done, total int64) { last = [2]int64{done, total} }); err != nil {
		t.Fatal(err)
	}
	if last != [2]int64{5, 5} {
		t.Errorf("last progress %v, want [5 5]", last)
	}
	MustVerify(t, l, 5)
}

func testList(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, db := NewLog(t, open)
	Fill(t, l, 30)
	seqs := func(es []audit.Entry) []int64 {
		var s []int64
		for _, e := range es {
			s = append(s, e.Seq)
		}
		return s
	}
	// Paging through everything, in order, nothing twice.
	var all []audit.Entry
	cursor := ""
	for pages := 0; ; pages++ {
		es, next, err := l.List(ctx, audit.Filter{}, 7, cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("too many pages")
		}
		cursor = next
	}
	if len(all) != 30 || all[0].Seq != 1 || all[29].Seq != 30 {
		t.Fatalf("paged %v", seqs(all))
	}
	es, _, err := l.List(ctx, audit.Filter{Actor: "usr_1"}, 100, "")
	if err != nil || len(es) != 10 {
		t.Fatalf("by actor: %v %v", seqs(es), err)
	}
	for _, e := range es {
		if e.Actor != "usr_1" {
			t.Errorf("actor filter let through %+v", e)
		}
	}
	es, _, err = l.List(ctx, audit.Filter{Subject: "prf_2", Actor: "usr_1"}, 100, "")
	if err != nil || len(es) != 2 { // i = 7, 22
		t.Fatalf("by subject and actor: %v %v", seqs(es), err)
	}
	// By time: move entries 1-10 an hour back (the hashes no longer
	// matter here).
	old := time.Now().Add(-time.Hour)
	if _, err := db.Exec(ctx, `UPDATE audit_entries SET at = ? WHERE seq <= 10`, statestore.TimeToDB(old)); err != nil {
		t.Fatal(err)
	}
	es, _, err = l.List(ctx, audit.Filter{From: old.Add(time.Minute)}, 100, "")
	if err != nil || len(es) != 20 || es[0].Seq != 11 {
		t.Fatalf("from: %v %v", seqs(es), err)
	}
	es, _, err = l.List(ctx, audit.Filter{To: old.Add(time.Minute)}, 100, "")
	if err != nil || len(es) != 10 || es[9].Seq != 10 {
		t.Fatalf("to: %v %v", seqs(es), err)
	}
	if _, _, err := l.List(ctx, audit.Filter{}, 10, "bogus"); !errors.Is(err, statestore.ErrBadCursor) {
		t.Errorf("bad cursor: %v", err)
	}
	if _, _, err := l.List(ctx, audit.Filter{}, 10, statestore.EncodeCursor("x")); !errors.Is(err, statestore.ErrBadCursor) {
		t.Errorf("cursor with a non-number: %v", err)
	}
}

// testNoSecrets: secrets and contact data given by mistake are not stored
// in clear.
func testNoSecrets(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, db := NewLog(t, open)
	secrets := []string{"wk_supersecretwritekey", "tdm_supersecrettoken", "ann@example.com", "+4915112345678", "hunter2"}
	_, err := l.Append(ctx, audit.Record{Actor: "usr_a", Action: "source.create", Resource: "source/src_1",
		Before: map[string]any{"config": map[string]any{"Secret": secrets[4]}},
		After: map[string]any{"writeKey": secrets[0], "list": []any{map[string]any{"api_token": "x", "token": secrets[1]}},
			"traits": map[string]any{"email": secrets[2], "phone": secrets[3], "plan": "pro"}}})
	if err != nil {
		t.Fatal(err)
	}
	var before, after string
	if err := db.QueryRow(ctx, `SELECT before_json, after_json FROM audit_entries WHERE seq = 1`).Scan(&before, &after); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(before+after, s) {
			t.Errorf("%q stored in clear: %s %s", s, before, after)
		}
	}
	if !strings.Contains(after, audit.Digest(secrets[0])) || !strings.Contains(after, `"plan":"pro"`) {
		t.Errorf("after = %s: want the write key's digest and the plan", after)
	}
	MustVerify(t, l, 1)

	// Text PostgreSQL would refuse is stored replaced, and still verifies.
	es, err := l.Append(ctx, audit.Record{Actor: "usr_\xff", Action: "events.read", Resource: "event/web/m\x00"})
	if err != nil {
		t.Fatalf("Append with invalid text: %v", err)
	}
	if es[0].Actor != "usr_\uFFFD" || es[0].Resource != "event/web/m\uFFFD" {
		t.Errorf("stored %q %q", es[0].Actor, es[0].Resource)
	}
	MustVerify(t, l, 2)
}

func testRefused(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, _ := NewLog(t, open)
	for _, r := range []audit.Record{
		{Action: "x", Resource: "y"},
		{Actor: "u", Resource: "y"},
		{Actor: "u", Action: "x"},
		{Actor: strings.Repeat("u", audit.MaxFieldLen+1), Action: "x", Resource: "y"},
		{Actor: "u", Action: "x", Resource: "y", After: func() {}},
	} {
		// A bad record among good ones: none is written.
		if _, err := l.Append(ctx, audit.Record{Actor: "u", Action: "ok", Resource: "r"}, r); err == nil {
			t.Errorf("Append(%+v) succeeded", r)
		}
	}
	MustVerify(t, l, 0)
}

// testRolledBack: entries appended in a transaction that rolls back leave
// no trace and no gap.
func testRolledBack(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, db := NewLog(t, open)
	Fill(t, l, 2)
	boom := errors.New("the change failed")
	err := db.Tx(ctx, func(tx *statestore.Tx) error {
		if _, err := l.AppendTx(ctx, tx, audit.Record{Actor: "u", Action: "user.create", Resource: "user/usr_x"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx: %v", err)
	}
	es := Fill(t, l, 1)
	if es[0].Seq != 3 {
		t.Errorf("after a rollback the next entry is %d, want 3", es[0].Seq)
	}
	MustVerify(t, l, 3)
}

// testConcurrent: concurrent appenders make one linear chain.
func testConcurrent(t *testing.T, open func(t *testing.T) *statestore.DB) {
	ctx := context.Background()
	l, _ := NewLog(t, open)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				recs := []audit.Record{{Actor: fmt.Sprintf("usr_%d", w), Action: "profile.read", Resource: "profile/p", Subject: "p"}}
				if i%5 == 0 {
					recs = append(recs, recs[0]) // some batches of two
				}
				if _, err := l.Append(ctx, recs...); err != nil {
					errs <- fmt.Errorf("writer %d append %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	MustVerify(t, l, writers*(each+each/5))
}

// testTampering: an edited, a deleted and a reordered entry are each
// found, and named, by Verify.
func testTampering(t *testing.T, open func(t *testing.T) *statestore.DB) {
	for _, tc := range []struct {
		name   string
		tamper []string // SQL run on a chain of 10 entries
		seq    int64
		kind   string
	}{
		{"edited actor", []string{`UPDATE audit_entries SET actor = 'usr_innocent' WHERE seq = 4`}, 4, audit.Edited},
		{"edited payload", []string{`UPDATE audit_entries SET after_json = '{"i":99}' WHERE seq = 6`}, 6, audit.Edited},
		{"edited time", []string{`UPDATE audit_entries SET at = at + 1 WHERE seq = 1`}, 1, audit.Edited},
		{"deleted", []string{`DELETE FROM audit_entries WHERE seq = 5`}, 5, audit.Deleted},
		{"deleted several", []string{`DELETE FROM audit_entries WHERE seq IN (3, 4)`}, 3, audit.Deleted},
		{"deleted first", []string{`DELETE FROM audit_entries WHERE seq = 1`}, 1, audit.Deleted},
		{"deleted last", []string{`DELETE FROM audit_entries WHERE seq = 10`}, 10, audit.Deleted},
		{"deleted and renumbered", []string{
			`DELETE FROM audit_entries WHERE seq = 5`,
			`UPDATE audit_entries SET seq = seq - 1 WHERE seq = 6`}, 5, audit.Reordered},
		{"reordered", []string{
			`UPDATE audit_entries SET seq = -1 WHERE seq = 3`,
			`UPDATE audit_entries SET seq = 3 WHERE seq = 4`,
			`UPDATE audit_entries SET seq = 4 WHERE seq = -1`}, 3, audit.Reordered},
		{"last moved first", []string{
			`UPDATE audit_entries SET seq = -1 WHERE seq = 1`,
			`UPDATE audit_entries SET seq = 1 WHERE seq = 10`,
			`UPDATE audit_entries SET seq = 10 WHERE seq = -1`}, 1, audit.Reordered},
		{"head rewound", []string{`UPDATE audit_head SET seq = 9`}, 9, audit.Edited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, db := NewLog(t, open)
			Fill(t, l, 10)
			MustVerify(t, l, 10)
			for _, q := range tc.tamper {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			rep, err := l.Verify(ctx, nil)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.Broken == nil || rep.Broken.Seq != tc.seq || rep.Broken.Kind != tc.kind || rep.Broken.Message == "" {
				t.Fatalf("Verify = %+v, broken %+v; want entry %d %s", rep, rep.Broken, tc.seq, tc.kind)
			}
		})
	}

	// An entry rewritten with a fresh hash is found at the next one, whose
	// prevHash no longer matches.
	t.Run("rewritten with its hash", func(t *testing.T) {
		ctx := context.Background()
		l, db := NewLog(t, open)
		es := Fill(t, l, 10)
		e := es[3]
		e.Actor = "usr_innocent"
		e.Hash = audit.Hash(e)
		if _, err := db.Exec(ctx, `UPDATE audit_entries SET actor = ?, hash = ? WHERE seq = 4`, e.Actor, e.Hash); err != nil {
			t.Fatal(err)
		}
		rep, err := l.Verify(ctx, nil)
		if err != nil || rep.Broken == nil || rep.Broken.Seq != 5 || rep.Broken.Kind != audit.Reordered {
			t.Fatalf("Verify = %+v, %v; want entry 5 reordered (its link to 4 broken)", rep.Broken, err)
		}
	})
}
