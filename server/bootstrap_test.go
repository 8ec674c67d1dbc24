package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/config"
	"tandem/statestore/postgres"
	"tandem/testserver"
)

// Nodes started at once on an empty shared state store bootstrap it once:
// one admin, one "default" source, every node opens without error, and
// the one admin token written to a data directory is the admin's.
func TestConcurrentBootstrapPostgres(t *testing.T) {
	pg := testserver.PostgresInstance(t)
	stateURL := pg.NewDatabase(t)
	for _, tok := range []string{"", testAdminToken} {
		name := "random token"
		if tok != "" {
			name = "TANDEM_ADMIN_TOKEN"
		}
		t.Run(name, func(t *testing.T) {
			url := stateURL
			if tok != "" {
				url = pg.NewDatabase(t)
			}
			t.Setenv("TANDEM_ADMIN_TOKEN", tok)
			const nodes = 4
			dirs := make([]string, nodes)
			errs := make([]error, nodes)
			start := make(chan struct{})
			// Hold each start that found no user until all have, or
			// until a second has passed (when they are serialized): the
			// race is then certain, not up to the scheduler.
			var arrivedMu sync.Mutex
			arrived := 0
			all := make(chan struct{})
			bootstrapHook = func() {
				arrivedMu.Lock()
				if arrived++; arrived == nodes {
					close(all)
				}
				arrivedMu.Unlock()
				select {
				case <-all:
				case <-time.After(time.Second):
				}
			}
			defer func() { bootstrapHook = nil }()
			var wg sync.WaitGroup
			for i := range nodes {
				dirs[i] = t.TempDir()
				cfg := config.Default()
				cfg.DataDir = dirs[i]
				cfg.State = url
				cfg.Pipeline = false
				cfg.ShutdownTimeout = 10 * time.Second
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					s, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
					if err == nil {
						s.Close()
					}
					errs[i] = err
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("node %d: Open: %v", i, err)
				}
			}

			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			var admins, sources int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM access_users WHERE role = 'admin'`).Scan(&admins); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRow(ctx, `SELECT count(*) FROM governance_sources WHERE name = 'default'`).Scan(&sources); err != nil {
				t.Fatal(err)
			}
			if admins != 1 || sources != 1 {
				t.Errorf("%d admins and %d sources named default after %d concurrent starts, want 1 and 1", admins, sources, nodes)
			}
			var files int
			for _, dir := range dirs {
				if _, err := os.Stat(filepath.Join(dir, "default.writekey")); err == nil {
					files++
				}
				if tok == "" {
					if b, err := os.ReadFile(filepath.Join(dir, "admin.token")); err == nil {
						var n int
						err := db.QueryRow(ctx, `SELECT count(*) FROM access_tokens`).Scan(&n)
						if err != nil || n != 1 || strings.TrimSpace(string(b)) == "" {
							t.Errorf("admin.token written, %d tokens stored (%v)", n, err)
						}
					}
				}
			}
			if files != 1 {
				t.Errorf("%d data directories got default.writekey, want 1", files)
			}
		})
	}
}
