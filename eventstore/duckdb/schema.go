package duckdb

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order on Open; migrations[i] brings the schema
// to version i+1. Append new migrations at the end, never edit applied ones:
// a database records the versions it has in schema_version.
var migrations = []string{
	// Version 1: the events table.
	//
	// Times are TIMESTAMPTZ (an instant, microsecond precision: Go's
	// nanoseconds are truncated on the way in). Empty optional strings and
	// zero optional times are stored as NULL.
	//
	// key_hash is the dedup fingerprint of (source_id, message_id), see
	// keyHash; it is recomputable in SQL as
	//   ('0x' || left(sha256(strlen(source_id)::VARCHAR || ':' || source_id || message_id), 16))::UBIGINT
	//
	// There is deliberately no PRIMARY KEY / UNIQUE index: DuckDB's ART
	// indexes made appends 5-10x slower at a few million rows and made
	// checkpoints rewrite the whole index (see Append for the design).
	// Rows are stored in arrival order, each batch sorted by timestamp, so
	// that row-group zone maps on timestamp stay tight for time ranges.
	`CREATE TABLE events (
		source_id          VARCHAR NOT NULL,
		message_id         VARCHAR NOT NULL,
		type               VARCHAR NOT NULL,
		name               VARCHAR,
		user_id            VARCHAR,
		anonymous_id       VARCHAR,
		group_id           VARCHAR,
		previous_id        VARCHAR,
		timestamp          TIMESTAMPTZ NOT NULL,
		original_timestamp TIMESTAMPTZ,
		sent_at            TIMESTAMPTZ,
		received_at        TIMESTAMPTZ NOT NULL,
		raw                VARCHAR NOT NULL,
		profile_id         VARCHAR,
		payload_key_id     VARCHAR,
		key_hash           UBIGINT NOT NULL
	)`,
	// Version 2: links from an event's profile key (eventstore.ProfileKey)
	// to its resolved profile, written by identity resolution and followed
	// at read time.
	`CREATE TABLE profile_links (
		key        VARCHAR PRIMARY KEY,
		profile_id VARCHAR NOT NULL
	)`,
	// Version 3: each event's attribution touch facts, in narrow columns
	// (see touchColumns). Open fills them for the rows stored before.
	`ALTER TABLE events ADD COLUMN touch UTINYINT;
	ALTER TABLE events ADD COLUMN touch_medium VARCHAR;
	ALTER TABLE events ADD COLUMN touch_source VARCHAR;
	ALTER TABLE events ADD COLUMN touch_campaign VARCHAR;
	ALTER TABLE events ADD COLUMN touch_channel VARCHAR;
	ALTER TABLE events ADD COLUMN touch_referrer VARCHAR;
	ALTER TABLE events ADD COLUMN touch_page VARCHAR`,
	// Version 4: the common conversion value properties, in narrow
	// columns (see valueColumns), filled here for the rows stored before.
	`ALTER TABLE events ADD COLUMN prop_revenue VARCHAR;
	ALTER TABLE events ADD COLUMN prop_value VARCHAR;
	UPDATE events SET prop_revenue = json_extract_string(raw, '$.properties."revenue"'), prop_value = json_extract_string(raw, '$.properties."value"')
	WHERE contains(raw, '"revenue"') OR contains(raw, '"value"')`,
	// Version 5: the token of the dedup key index that covers the events
	// (dedup.go): an index directory with another token, or none, is
	// rebuilt from the table at open. Being a migration, it also stops
	// older builds, which would store events without indexing their keys,
	// from opening the file.
	`CREATE TABLE dedup_index (token VARCHAR NOT NULL)`,
	// Version 6: the events table again, with the same columns in the
	// same order and its rows, but each string column's compression
	// chosen here (USING COMPRESSION) instead of by DuckDB at every row
	// group it writes. DuckDB analyses each column under every method it
	// could use (for a string column dictionary and FSST: the dictionary
	// analysis copies every distinct string, all of raw's, into a hash
	// table) before compressing it with the best; a forced method is the
	// only one analysed (with uncompressed, its fallback). The methods are
	// those DuckDB chose for the e2e load's rows: dictionary for the
	// columns of few values (and the mostly NULL ones), FSST for
	// message_id and raw, key_hash uncompressed (random 64-bit values).
	// user_id and anonymous_id, which funnels group by (a dictionary
	// segment scans as dictionary vectors: DuckDB picks one when a row
	// group holds few visitors), touch_referrer, touch_page and the value
	// columns, whose values may be few or many, stay automatic. Measured on 245,760 events of the e2e
	// load's shape (BenchmarkStageE2E's): the row group commits cost about
	// 0.7x the CPU, the file the same size. DuckDB has no ALTER COLUMN for it: the table
	// is copied (one pass over the rows, at the first open after an
	// upgrade), and COPY FROM DATABASE (compaction) keeps the methods.
	`CREATE TABLE events_v6 (
		source_id          VARCHAR NOT NULL USING COMPRESSION dictionary,
		message_id         VARCHAR NOT NULL USING COMPRESSION fsst,
		type               VARCHAR NOT NULL USING COMPRESSION dictionary,
		name               VARCHAR USING COMPRESSION dictionary,
		user_id            VARCHAR,
		anonymous_id       VARCHAR,
		group_id           VARCHAR USING COMPRESSION dictionary,
		previous_id        VARCHAR USING COMPRESSION dictionary,
		timestamp          TIMESTAMPTZ NOT NULL,
		original_timestamp TIMESTAMPTZ,
		sent_at            TIMESTAMPTZ,
		received_at        TIMESTAMPTZ NOT NULL,
		raw                VARCHAR NOT NULL USING COMPRESSION fsst,
		profile_id         VARCHAR USING COMPRESSION dictionary,
		payload_key_id     VARCHAR USING COMPRESSION dictionary,
		key_hash           UBIGINT NOT NULL USING COMPRESSION uncompressed,
		touch              UTINYINT,
		touch_medium       VARCHAR USING COMPRESSION dictionary,
		touch_source       VARCHAR USING COMPRESSION dictionary,
		touch_campaign     VARCHAR USING COMPRESSION dictionary,
		touch_channel      VARCHAR USING COMPRESSION dictionary,
		touch_referrer     VARCHAR,
		touch_page         VARCHAR,
		prop_revenue       VARCHAR,
		prop_value         VARCHAR
	);
	INSERT INTO events_v6 (source_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id, timestamp, original_timestamp, sent_at, received_at, raw, profile_id, payload_key_id, key_hash, touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page, prop_revenue, prop_value)
		SELECT source_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id, timestamp, original_timestamp, sent_at, received_at, raw, profile_id, payload_key_id, key_hash, touch, touch_medium, touch_source, touch_campaign, touch_channel, touch_referrer, touch_page, prop_revenue, prop_value FROM events;
	DROP TABLE events;
	ALTER TABLE events_v6 RENAME TO events`,
	// Version 7: every source_id of the events (a superset: a source
	// stays after its events are erased or expired), which Get without a
	// source hashes the messageId under (see Store.sources). Written
	// before the rows of a new source commit, so Open reads the list
	// instead of scanning the source_id column (at 100 million events the
	// scan took seconds and left DuckDB's buffer pool full, about 125 MiB
	// resident). Being a migration, it also stops older builds, which
	// would store events without recording their source, from opening the
	// file.
	`CREATE TABLE event_sources (source_id VARCHAR PRIMARY KEY);
	INSERT INTO event_sources SELECT DISTINCT source_id FROM events`,
}

// migrate creates the schema_version table if needed and applies the
// migrations the database does not have yet, each in its own transaction.
func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
	)`); err != nil {
		return fmt.Errorf("eventstore/duckdb: create schema_version: %w", err)
	}
	var have int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("eventstore/duckdb: read schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("eventstore/duckdb: database schema version %d is newer than this build knows (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if err := applyMigration(ctx, db, v); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, version int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("eventstore/duckdb: migration %d: %w", version, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, migrations[version-1]); err != nil {
		return fmt.Errorf("eventstore/duckdb: migration %d: %w", version, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, version); err != nil {
		return fmt.Errorf("eventstore/duckdb: migration %d: record version: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("eventstore/duckdb: migration %d: commit: %w", version, err)
	}
	return nil
}
