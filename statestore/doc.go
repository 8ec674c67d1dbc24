// Package statestore is tandem's SQL state store: the relational database
// that holds the platform's own state (users, tokens, sources, approvals,
// quarantined events, …), shared by every concept package.
//
// A [DB] wraps a [database/sql.DB] together with a [Dialect] that hides the
// differences between backends (SQLite embedded by default, PostgreSQL for
// server deployments):
//
//   - Concept packages write queries with `?` placeholders; [DB.Exec],
//     [DB.Query], [DB.QueryRow] and the same methods of [Tx] rebind them for
//     the backend (PostgreSQL gets $1..$n, see [RebindDollar]).
//   - A unique or primary-key violation is reported as an error that
//     matches [ErrConflict] with [errors.Is] (the driver's error stays
//     reachable with [errors.As]); [Dialect.IsConflict] tests raw driver
//     errors.
//   - On a [BusyDialect] (PostgreSQL), a transaction the database aborted
//     because of a concurrent one (serialization failure, deadlock) is
//     reported as an error that matches [ErrBusy].
//   - A [Row] that matches nothing scans to an error matching [ErrNotFound]
//     (and [database/sql.ErrNoRows]).
//   - Backends that allow a single writer (SQLite) are opened with
//     [WithSingleWriter]: every [DB.Exec] and [DB.Tx] then takes a write
//     slot first, so concurrent writers queue in the process instead of
//     failing with SQLITE_BUSY.
//   - [DB.Batch] makes several steps, each written as its own [DB.Tx], one
//     transaction: the pipeline's state-store stage commits a batch's
//     identity resolution, consent and computed traits once. A step's
//     [Tx.AfterCommit] hooks (caches of what is stored) run after that
//     commit; its [Tx.Await] functions (work beside the transaction, such
//     as identity's profile links into the event store) are waited for
//     before it, at the end of the whole batch, so that the work beside
//     overlaps every later step; a batch that loses a race runs again
//     whole.
//
// # Migrations
//
// Each concept package owns its tables and exposes its ordered
// [Migration]s; the process applies them with [DB.Migrate]. Each migration
// runs once, in its own transaction, and is recorded (with a checksum of its
// SQL) in the schema_migrations table; re-running Migrate is a no-op, and
// changing the SQL of an applied migration is reported as an error.
// Several processes may migrate one database at once (nodes starting
// together against PostgreSQL): each migration's transaction first claims
// its row in schema_migrations, so it runs once, and a dialect that is a
// [MigrationLocker] also takes a database-wide lock, so migrations of
// different processes never interleave.
//
// Migration SQL must be portable between SQLite and PostgreSQL 15: TEXT,
// BIGINT, DOUBLE PRECISION; text primary keys (see [NewID]) rather than
// auto-increment columns; INSERT … ON CONFLICT … DO NOTHING; times as
// BIGINT nanoseconds (see [TimeToDB]). Where a type must differ (BLOB in
// SQLite, BYTEA in PostgreSQL) a migration gives the variant per dialect in
// [Migration.DialectSQL]. Cross-package foreign keys are avoided so that
// packages migrate independently.
//
// # Contract
//
// Every backend must pass the contract suite in statestore/statetest, which
// also runs the suites of the concept packages (access, governance,
// quarantine) against it.
package statestore
