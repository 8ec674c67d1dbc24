package statestore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Migration is one step of a concept package's schema. A package's
// migrations are applied in Version order, each once, each in its own
// transaction.
type Migration struct {
	// Package owns the migration, e.g. "access". Versions are numbered per
	// package.
	Package string
	// Version is the step's number within Package, from 1.
	Version int
	// SQL is the portable script: one or more statements separated by
	// semicolons (see [SplitStatements]). Placeholders are not allowed.
	SQL string
	// DialectSQL, when it has an entry for the database's [Dialect.Name],
	// replaces SQL for that dialect (e.g. BLOB in SQLite, BYTEA in
	// PostgreSQL).
	DialectSQL map[string]string
}

func (m Migration) String() string { return fmt.Sprintf("%s/%d", m.Package, m.Version) }

// script returns the migration's SQL for dialect d.
func (m Migration) script(d string) string {
	if s, ok := m.DialectSQL[d]; ok {
		return s
	}
	return m.SQL
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	package_name TEXT NOT NULL,
	version BIGINT NOT NULL,
	checksum TEXT NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (package_name, version)
)`

// Migrate applies the migrations not applied yet, each in its own
// transaction, recording each in the schema_migrations table. Migrations of
// one package are applied in Version order whatever their order in migs;
// packages in the order they first appear. Running Migrate again with the
// same migrations does nothing. It is an error to pass two migrations with
// the same package and version, or a migration whose SQL differs from the
// SQL recorded when it was applied. Concurrent Migrate calls (from several
// processes sharing a PostgreSQL database, say) apply each migration once.
func (db *DB) Migrate(ctx context.Context, migs ...Migration) error {
	if err := validateMigrations(migs); err != nil {
		return err
	}
	if err := db.createMigrationsTable(ctx); err != nil {
		return err
	}
	applied, err := db.appliedChecksums(ctx)
	if err != nil {
		return err
	}
	for _, m := range orderMigrations(migs) {
		script := m.script(db.dialect.Name())
		sum := checksum(script)
		if got, ok := applied[m.String()]; ok {
			if got != sum {
				return fmt.Errorf("statestore: migration %s was changed after it was applied", m)
			}
			continue
		}
		if err := db.apply(ctx, m, script, sum); err != nil {
			return err
		}
	}
	return nil
}

// createTableLockKey names the lock under which schema_migrations is
// created: "tandem" and "schm" in ASCII.
const createTableLockKey int64 = 0x74616e64_7363686d

// createMigrationsTable creates schema_migrations if it does not exist.
// Processes starting at once on one PostgreSQL database create it one
// after the other (under a lock): concurrent CREATE TABLE IF NOT EXISTS
// statements can fail with "already exists" (42P07) or on the catalog's
// unique index.
func (db *DB) createMigrationsTable(ctx context.Context) error {
	var err error
	lockErr := db.WithLock(ctx, createTableLockKey, func() error {
		_, err = db.Exec(ctx, createMigrationsTable)
		return nil
	})
	if lockErr != nil {
		return fmt.Errorf("statestore: create schema_migrations: %w", lockErr)
	}
	if db.IsConflict(err) {
		// PostgreSQL: a concurrent CREATE TABLE IF NOT EXISTS can fail on
		// its catalog's unique index; the table exists now.
		_, err = db.Exec(ctx, createMigrationsTable)
	}
	if err != nil {
		return fmt.Errorf("statestore: create schema_migrations: %w", err)
	}
	return nil
}

// apply runs one migration in a transaction.
func (db *DB) apply(ctx context.Context, m Migration, script, sum string) error {
	return db.Tx(ctx, func(tx *Tx) error {
		if l, ok := db.dialect.(MigrationLocker); ok {
			// One migrating process at a time: DDL of two processes
			// interleaved in one database can deadlock, or fail on the
			// catalog's unique indexes.
			if _, err := tx.tx.ExecContext(ctx, l.MigrationLockSQL()); err != nil {
				return fmt.Errorf("statestore: migration %s: lock: %w", m, db.mapErr(err))
			}
		}
		// Claim the migration first: a concurrent migrator that claimed it
		// already makes this insert do nothing (after waiting for its
		// commit, in PostgreSQL), and we leave it alone.
		res, err := tx.Exec(ctx, `INSERT INTO schema_migrations (package_name, version, checksum, applied_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (package_name, version) DO NOTHING`,
			m.Package, m.Version, sum, TimeToDB(time.Now()))
		if err != nil {
			return fmt.Errorf("statestore: migration %s: record: %w", m, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("statestore: migration %s: record: %w", m, err)
		} else if n == 0 {
			return nil
		}
		for i, stmt := range SplitStatements(script) {
			if _, err := tx.tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("statestore: migration %s: statement %d: %w", m, i+1, db.mapErr(err))
			}
		}
		return nil
	})
}

// appliedChecksums returns the checksum of each applied migration by
// "package/version".
func (db *DB) appliedChecksums(ctx context.Context) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT package_name, version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("statestore: read schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := make(map[string]string)
	for rows.Next() {
		var m Migration
		var sum string
		if err := rows.Scan(&m.Package, &m.Version, &sum); err != nil {
			return nil, fmt.Errorf("statestore: read schema_migrations: %w", err)
		}
		applied[m.String()] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("statestore: read schema_migrations: %w", err)
	}
	return applied, nil
}

// AppliedVersion returns the highest applied migration version of pkg, 0
// when none is (also on a database never migrated).
func (db *DB) AppliedVersion(ctx context.Context, pkg string) (int, error) {
	if err := db.createMigrationsTable(ctx); err != nil {
		return 0, err
	}
	var v int
	err := db.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE package_name = ?`, pkg).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("statestore: applied version of %s: %w", pkg, err)
	}
	return v, nil
}

func validateMigrations(migs []Migration) error {
	seen := make(map[string]bool, len(migs))
	for _, m := range migs {
		switch {
		case m.Package == "":
			return fmt.Errorf("statestore: migration %s: no package", m)
		case m.Version < 1:
			return fmt.Errorf("statestore: migration %s: version must be 1 or more", m)
		case len(SplitStatements(m.SQL)) == 0 && len(m.DialectSQL) == 0:
			return fmt.Errorf("statestore: migration %s: no SQL", m)
		case seen[m.String()]:
			return fmt.Errorf("statestore: migration %s given twice", m)
		}
		seen[m.String()] = true
	}
	return nil
}

// orderMigrations sorts migs by package (in order of first appearance) then
// version.
func orderMigrations(migs []Migration) []Migration {
	rank := make(map[string]int)
	for _, m := range migs {
		if _, ok := rank[m.Package]; !ok {
			rank[m.Package] = len(rank)
		}
	}
	out := slices.Clone(migs)
	slices.SortStableFunc(out, func(a, b Migration) int {
		if c := cmp.Compare(rank[a.Package], rank[b.Package]); c != 0 {
			return c
		}
		return cmp.Compare(a.Version, b.Version)
	})
	return out
}

// checksum identifies a script's statements, ignoring space around them.
func checksum(script string) string {
	sum := sha256.Sum256([]byte(strings.Join(SplitStatements(script), ";\n")))
	return hex.EncodeToString(sum[:])
}
