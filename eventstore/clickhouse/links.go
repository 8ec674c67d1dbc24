package clickhouse

import (
	"context"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"tandem/eventstore"
)

// LinkProfiles records links from profile keys to profiles; see
// [eventstore.Store.LinkProfiles]. When a key appears more than once in
// links, the last one wins.
//
// Each call inserts one row per key, in one INSERT (so one part: all the
// links become visible together), with a version above every version this
// process issued before: the Unix time in nanoseconds, made strictly
// increasing. Across processes, the link written at the later clock time
// wins; identity resolution writes a profile's links from one node at a
// time, so clocks only matter if two nodes relink the same key within
// their clock skew.
func (s *Store) LinkProfiles(ctx context.Context, links []eventstore.ProfileLink) error {
	if len(links) == 0 {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	last := make(map[string]string, len(links))
	order := make([]string, 0, len(links))
	for _, l := range links {
		if _, seen := last[l.Key]; !seen {
			order = append(order, l.Key)
		}
		last[l.Key] = l.ProfileID
	}
	t, err := newTable("_links", "key String", "profile_id String", "version UInt64")
	if err != nil {
		return s.wrap("link profiles", err)
	}
	v := nextVersion()
	for _, k := range order {
		if err := t.Append(k, last[k], v); err != nil {
			return s.wrap("link profiles", err)
		}
	}
	if err := s.conn.Exec(ch.Context(ctx, ch.WithExternalTable(t)), `INSERT INTO `+s.table("profile_links")+
		` (key, profile_id, version) SELECT key, profile_id, version FROM _links`); err != nil {
		return s.wrap("link profiles", err)
	}
	return nil
}

var (
	versionMu   sync.Mutex
	lastVersion uint64
)

// nextVersion returns a link version above every one returned before.
func nextVersion() uint64 {
	versionMu.Lock()
	defer versionMu.Unlock()
	v := uint64(time.Now().UnixNano())
	if v <= lastVersion {
		v = lastVersion + 1
	}
	lastVersion = v
	return v
}

// ProfileLinks returns the keys linked to profileID, sorted.
func (s *Store) ProfileLinks(ctx context.Context, profileID string) ([]string, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	keys, err := s.profileLinks(ctx, profileID)
	if err != nil {
		return nil, s.wrap("profile links", err)
	}
	return keys, nil
}

// profileLinks returns the keys whose latest link is to profileID. The
// inner query (a scan of the narrow profile_id column) finds keys ever
// linked to it; their latest versions are then read through the index.
func (s *Store) profileLinks(ctx context.Context, profileID string) ([]string, error) {
	if profileID == "" {
		return nil, nil
	}
	links := s.table("profile_links")
	rows, err := s.conn.Query(ctx, `SELECT key FROM (
		SELECT key, argMax(profile_id, version) AS p FROM `+links+`
		WHERE key IN (SELECT key FROM `+links+` WHERE profile_id = `+quote(profileID)+`)
		GROUP BY key
	) WHERE p = `+quote(profileID)+` ORDER BY key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}
