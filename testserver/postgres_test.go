package testserver_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tandem/testserver"
)

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	var first string
	t.Run("fresh database", func(t *testing.T) {
		first = testserver.Postgres(t)
		second := testserver.Postgres(t)
		if first == second {
			t.Fatalf("two calls gave the same database %s", first)
		}
		u, err := url.Parse(first)
		if err != nil || u.Hostname() != "127.0.0.1" {
			t.Fatalf("URL %s: want a loopback URL (%v)", first, err)
		}
		c := connect(t, first)
		var tables int
		if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("new database has %d tables (%v)", tables, err)
		}
		// The owner can create tables, and is not a superuser.
		if _, err := c.Exec(ctx, `CREATE TABLE t (id TEXT PRIMARY KEY)`); err != nil {
			t.Fatal(err)
		}
		var super bool
		if err := c.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || super {
			t.Errorf("superuser = %v (%v), want a plain role", super, err)
		}
		for _, setting := range []string{"fsync", "full_page_writes", "synchronous_commit"} {
			var v string
			if err := c.QueryRow(ctx, "SHOW "+setting).Scan(&v); err != nil || v != "on" {
				t.Errorf("%s = %q (%v), want on", setting, v, err)
			}
		}
	})
	// The subtest's databases were dropped when it ended.
	name := strings.TrimPrefix(mustParse(t, first).Path, "/")
	other := testserver.Postgres(t)
	var n int
	if err := connect(t, other).QueryRow(ctx, `SELECT COUNT(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s still exists after its test (%d, %v)", name, n, err)
	}
}

func TestPostgresStopStart(t *testing.T) {
	ctx := context.Background()
	pg := testserver.PostgresInstance(t)
	u := pg.NewDatabase(t)
	if _, err := connect(t, u).Exec(ctx, `CREATE TABLE kept (id TEXT); INSERT INTO kept VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := pgx.Connect(ctx, u); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := connect(t, u).QueryRow(ctx, `SELECT COUNT(*) FROM kept`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after restart: %d rows (%v), want 1", n, err)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
