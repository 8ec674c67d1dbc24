package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/statestore"
	"tandem/statestore/sqlite"
)

// BenchmarkTextArgs inserts rows of the shape of identity_idents (two text
// columns, two integers) in statements of 400 rows, the text passed as
// strings (plain placeholders) or as [statestore.Tx.Text] (the dialect's
// TextParam). Each iteration writes 4,000 rows in a transaction it rolls
// back, so the table stays small and the figure is the binding's and the
// statement's, not the B-tree's growth or a commit's fsync.
//
//	go test -run '^$' -bench TextArgs -count 6 ./statestore/sqlite/
func BenchmarkTextArgs(b *testing.B) {
	for _, asText := range []bool{false, true} {
		b.Run(fmt.Sprintf("text=%v", asText), func(b *testing.B) {
			db, err := sqlite.Open(filepath.Join(b.TempDir(), "s.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			if _, err := db.Exec(ctx, `CREATE TABLE t (ident TEXT PRIMARY KEY, component TEXT NOT NULL, first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			const rows, statements = 400, 10
			ids := make([]string, rows*statements)
			for i := range ids {
				ids[i] = fmt.Sprintf("user_id:%016x", uint64(i)*0x9e3779b97f4a7c15)
			}
			errDone := errors.New("roll back")
			b.ResetTimer()
			cpu0 := processCPU()
			for range b.N {
				err := db.Tx(ctx, func(tx *statestore.Tx) error {
					p := "?"
					if asText {
						p = tx.TextParam()
					}
					one := "(" + p + ", " + p + ", ?, ?)"
					q := `INSERT INTO t (ident, component, first_seen, last_seen) VALUES ` + strings.Repeat(one+", ", rows-1) + one
					for s := range statements {
						args := make([]any, 0, 4*rows)
						for _, id := range ids[s*rows : (s+1)*rows] {
							if asText {
								args = append(args, tx.Text(id), tx.Text("cmp_06bk4n9tq3e0rq5x2m8h7c1z"), int64(1), int64(2))
							} else {
								args = append(args, id, "cmp_06bk4n9tq3e0rq5x2m8h7c1z", int64(1), int64(2))
							}
						}
						if _, err := tx.ExecCached(ctx, q, args...); err != nil {
							return err
						}
					}
					return errDone
				})
				if !errors.Is(err, errDone) {
					b.Fatal(err)
				}
			}
			// CPU rather than wall time: steadier on a shared machine.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N*rows*statements), "cpu-ns/row")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
