package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// migrations are applied in order on Open; migrations[i] brings the schema
// to version i+1. Append new migrations at the end, never edit applied
// ones: a database records the versions it has in schema_version. "{db}"
// stands for the store's database.
//
// ClickHouse DDL is not transactional, so every migration must be safe to
// run again (IF NOT EXISTS): a crash between a migration and the record of
// its version, or two nodes starting at once, re-runs it.
var migrations = []string{
	// Version 1: the events table.
	//
	// Times are Int64 Unix microseconds in UTC (ClickHouse 18.16 has no
	// DateTime64; DateTime has whole seconds only); Go's nanoseconds are
	// truncated on the way in. The optional times are NULL when absent.
	// Absent optional strings are ''. raw is the event's JSON, byte for
	// byte (String holds any bytes).
	//
	// profile_key is eventstore.ProfileKey(user_id, anonymous_id): events
	// are sorted by it, then by time, so one profile's timeline (through
	// the keys linked to it) is a few ranges of the primary index. Each
	// month of event time is a partition, so time ranges skip the others.
	// The partition expression clamps times to DateTime's range
	// (1970..2106); events outside it share the first or last month.
	//
	// stored_at (Unix microseconds) says which copy came first should two
	// processes ever store the same event (see Store.Append).
	`CREATE TABLE IF NOT EXISTS {db}.events (
		profile_key        String,
		timestamp          Int64,
		source_id          String,
		message_id         String,
		type               String,
		name               String,
		user_id            String,
		anonymous_id       String,
		group_id           String,
		previous_id        String,
		original_timestamp Nullable(Int64),
		sent_at            Nullable(Int64),
		received_at        Int64,
		raw                String,
		stored_at          Int64
	) ENGINE = MergeTree
	PARTITION BY toYYYYMM(toDateTime(intDiv(least(greatest(timestamp, 0), 4294967295000000), 1000000), 'UTC'))
	ORDER BY (profile_key, timestamp)`,

	// Version 2: the key index. One row per stored event (and possibly
	// rows for events whose INSERT failed: Append writes keys first and
	// checks them against events), sorted by (message_id, source_id) so
	// that dedup and Get look keys up through the primary index, and
	// carrying the event's place in the events table's sort order so that
	// it is found there through that table's index too. Small granules:
	// a batch's lookups touch one granule per key.
	`CREATE TABLE IF NOT EXISTS {db}.event_keys (
		message_id  String,
		source_id   String,
		profile_key String,
		timestamp   Int64
	) ENGINE = MergeTree
	ORDER BY (message_id, source_id)
	SETTINGS index_granularity = 1024`,

	// Version 3: links from an event's profile key (eventstore.ProfileKey)
	// to its resolved profile, written by identity resolution and followed
	// at read time. Each LinkProfiles writes new rows with a higher
	// version; the row of the highest version of a key is its link (read
	// with argMax, which is right before and after background merges
	// collapse the older rows). profile_id '' means unlinked.
	`CREATE TABLE IF NOT EXISTS {db}.profile_links (
		key        String,
		profile_id String,
		version    UInt64
	) ENGINE = ReplacingMergeTree(version)
	ORDER BY key`,

	// Version 4: each event's attribution touch facts, in narrow columns
	// (see touchColumns); rows stored before have touch 255 (unread).
	// 18.16 has no ADD COLUMN IF NOT EXISTS: migrate skips an ALTER whose
	// first column exists (one ALTER adds all of them or none).
	`ALTER TABLE {db}.events
		ADD COLUMN touch UInt8 DEFAULT 255,
		ADD COLUMN touch_medium String,
		ADD COLUMN touch_source String,
		ADD COLUMN touch_campaign String,
		ADD COLUMN touch_channel String,
		ADD COLUMN touch_referrer String,
		ADD COLUMN touch_page String`,
}

// addedColumn is the table and first column an ALTER TABLE … ADD COLUMN
// migration adds ("" for other migrations).
var addedColumn = regexp.MustCompile(`^ALTER TABLE \{db\}\.(\w+)\s+ADD COLUMN (\w+)`)

// migrate creates the schema_version table if needed and applies the
// migrations the database does not have yet.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table("schema_version")+` (
		version    UInt32,
		applied_at DateTime DEFAULT now()
	) ENGINE = MergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	have, err := s.schemaVersion(ctx)
	if err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this build knows (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		var exists uint64
		if m := addedColumn.FindStringSubmatch(migrations[v-1]); m != nil {
			if err := s.conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?`, s.dbName, m[1], m[2]).Scan(&exists); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if exists == 0 {
			if err := s.conn.Exec(ctx, strings.ReplaceAll(migrations[v-1], "{db}", s.db)); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if err := s.conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (version) SELECT toUInt32(%d)", s.table("schema_version"), v)); err != nil {
			return fmt.Errorf("migration %d: record version: %w", v, err)
		}
	}
	return nil
}

// schemaVersion returns the highest applied migration (0 for none).
func (s *Store) schemaVersion(ctx context.Context) (int, error) {
	var v uint32
	if err := s.conn.QueryRow(ctx, "SELECT max(version) FROM "+s.table("schema_version")).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v), nil
}
