package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestExpPhases(t *testing.T) {
	if os.Getenv("EXP") == "" {
		t.Skip()
	}
	path := filepath.Join(t.TempDir(), "e.duckdb")
	if os.Getenv("EXP") == "mem" {
		path = ""
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.Exec("SET GLOBAL checkpoint_threshold='100GB'")
	ctx := context.Background()
	var ph [5]time.Duration
	var cpu [5]time.Duration
	mark := func(i int, t0 time.Time, c0 time.Duration) { ph[i] += time.Since(t0); cpu[i] += cpuTime() - c0 }
	const batches, size = 30, 10000
	for b := 0; b < batches; b++ {
		evs := benchBatch(fmt.Sprintf("b%d", b), size, time.Now())
		t0, c0 := time.Now(), cpuTime()
		batch := prepare(evs)
		mark(0, t0, c0)
		conn, _ := s.db.Conn(ctx)
		t0, c0 = time.Now(), cpuTime()
		fresh, _ := s.dropStored(ctx, conn, batch)
		mark(1, t0, c0)
		err := conn.Raw(func(dc any) error {
			tx, _ := dc.(driver.ConnBeginTx).BeginTx(ctx, driver.TxOptions{})
			t0, c0 := time.Now(), cpuTime()
			if err := s.appendRows(ctx, dc.(driver.Conn), fresh); err != nil {
				return err
			}
			mark(2, t0, c0)
			for _, p := range fresh {
				s.keys[p.hash] = struct{}{}
			}
			t0, c0 = time.Now(), cpuTime()
			err := tx.Commit()
			mark(3, t0, c0)
			return err
		})
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t0, c0 := time.Now(), cpuTime()
	if _, err := s.db.Exec("CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	mark(4, t0, c0)
	rows, err := s.db.Query("SELECT column_name, compression, count(*) FROM pragma_storage_info('events') WHERE segment_type <> 'VALIDITY' GROUP BY ALL ORDER BY 1")
	if err == nil {
		for rows.Next() {
			var a, b string
			var c int
			rows.Scan(&a, &b, &c)
			t.Logf("storage %s %s %d", a, b, c)
		}
		rows.Close()
	}
	n := float64(batches * size)
	if st, err := os.Stat(path); err == nil {
		t.Logf("file %d MB", st.Size()>>20)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	t.Logf("minflt per event %.1f", float64(ru.Minflt)/n)
	for i, name := range []string{"prepare", "dropStored", "appendRows", "commit", "checkpoint"} {
		t.Logf("%-10s wall %6.2f µs/event  cpu %6.2f µs/event", name, float64(ph[i].Nanoseconds())/1e3/n, float64(cpu[i].Nanoseconds())/1e3/n)
	}
}
