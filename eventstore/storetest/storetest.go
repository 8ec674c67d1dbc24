// Package storetest is the contract suite for [eventstore.Store]
// implementations. An implementation's tests call [Run] (and [RunDurable]
// for stores that persist) with a function that opens a new, empty store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eventstore.Store { ... })
//	}
//
// A store that offers analytics (analytics.Provider, as both stores do)
// has its own backend checked against its layout too (case Analytics).
//
// What the suite allows implementations to differ on:
//   - time precision: a returned time must equal the appended one, or the
//     appended one truncated to the microsecond; List's From/To are compared
//     against the stored (possibly truncated) times;
//   - Raw must come back as the same JSON value (byte equality is preferred
//     but not required here);
//   - ordering ties are broken by source and messageId in byte order; the
//     suite uses ASCII identifiers only.
package storetest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
)

// Run runs the contract suite. open must return a new, empty store each
// time it is called; Run closes every store it opens.
func Run(t *testing.T, open func(t *testing.T) eventstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"RoundTripTimes", testRoundTripTimes},
		{"RoundTripRaw", testRoundTripRaw},
		{"AppendEmpty", testAppendEmpty},
		{"DedupWithinBatch", testDedupWithinBatch},
		{"DedupAcrossBatches", testDedupAcrossBatches},
		{"SameMessageIDTwoSources", testSameMessageIDTwoSources},
		{"GetNotFound", testGetNotFound},
		{"Count", testCount},
		{"ListOrder", testListOrder},
		{"ListFilters", testListFilters},
		{"ListTimeRange", testListTimeRange},
		{"ListPagination", testListPagination},
		{"ListPaginationFiltered", testListPaginationFiltered},
		{"ListLimits", testListLimits},
		{"ListBadCursor", testListBadCursor},
		{"ConcurrentAppend", testConcurrentAppend},
		{"ConcurrentReadersSeeWholeBatches", testConcurrentReaders},
		{"AtomicOnCancel", testAtomicOnCancel},
		{"ProfileLinks", testProfileLinks},
		{"ProfileLinksNew", testProfileLinksNew},
		{"Erase", testErase},
		{"Expire", testExpire},
		{"Ping", testPing},
		{"Analytics", testAnalytics},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// RunDurable checks that a store keeps its events, and its dedup, across
// Close and reopen. open must open the store kept in dir (creating it when
// dir is empty); RunDurable closes every store it opens.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) eventstore.Store) {
	t.Helper()
	t.Run("Reopen", func(t *testing.T) {
		dir := t.TempDir()
		base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

		a := make([]event.Event, 50)
		for i := range a {
			a[i] = fullEvent("src-a", fmt.Sprintf("m%03d", i), base.Add(time.Duration(i)*time.Second))
		}
		s := open(t, dir)
		mustAppend(t, s, a, len(a))
		closeStore(t, s)

		s = open(t, dir)
		if n := mustCount(t, s); n != int64(len(a)) {
			t.Fatalf("after reopen Count = %d, want %d", n, len(a))
		}
		for i := range a {
			got := mustGet(t, s, a[i].SourceID, a[i].MessageID)
			checkEvents(t, got, a[i:i+1])
		}
		// Dedup across reopen: the same keys with other content are
		// duplicates, and the first version stays.
		again := slices.Clone(a)
		for i := range again {
			again[i].Name = "Changed"
		}
		mustAppend(t, s, again, 0)
		b := []event.Event{fullEvent("src-a", "new-1", base), fullEvent("src-b", "m000", base)}
		mustAppend(t, s, append(b, a[0]), len(b))
		closeStore(t, s)

		s = open(t, dir)
		defer closeStore(t, s)
		if n := mustCount(t, s); n != int64(len(a)+len(b)) {
			t.Fatalf("after second reopen Count = %d, want %d", n, len(a)+len(b))
		}
		checkEvents(t, mustGet(t, s, "src-a", "m007"), a[7:8])
		checkEvents(t, mustGet(t, s, "src-b", "m000"), b[1:2])
		checkEvents(t, mustGet(t, s, "", "m007"), a[7:8])
		got := mustGet(t, s, "", "m000")
		slices.SortFunc(got, func(x, y event.Event) int { return cmp.Compare(x.SourceID, y.SourceID) })
		checkEvents(t, got, []event.Event{a[0], b[1]})
		mustAppend(t, s, a, 0)
	})
}

// --- events ---

var baseTime = time.Date(2025, 1, 15, 10, 30, 0, 0, time.UTC)

// fullEvent returns an event with every field set, times at microsecond
// precision, and Raw matching the fields.
func fullEvent(src, msg string, ts time.Time) event.Event {
	e := event.Event{
		SourceID:          src,
		MessageID:         msg,
		Type:              "track",
		Name:              "Order Completed",
		UserID:            "user-" + msg,
		AnonymousID:       "anon-" + msg,
		GroupID:           "group-1",
		PreviousID:        "prev-1",
		Timestamp:         ts,
		OriginalTimestamp: ts.Add(-1500 * time.Millisecond),
		SentAt:            ts.Add(2 * time.Second),
		ReceivedAt:        ts.Add(3*time.Second + 250*time.Microsecond),
	}
	e.Raw = rawFor(e)
	return e
}

func rawFor(e event.Event) []byte {
	m := map[string]any{
		"type":        e.Type,
		"messageId":   e.MessageID,
		"event":       e.Name,
		"userId":      e.UserID,
		"anonymousId": e.AnonymousID,
		"timestamp":   e.Timestamp.Format(time.RFC3339Nano),
		"properties":  map[string]any{"revenue": 12.5, "currency": "EUR", "items": []any{1, "two", nil, true}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// --- helpers ---

func mustAppend(t *testing.T, s eventstore.Store, evs []event.Event, wantNew int) {
	t.Helper()
	n, err := s.Append(context.Background(), evs)
	if err != nil {
		t.Fatalf("Append(%d events): %v", len(evs), err)
	}
	if n != wantNew {
		t.Fatalf("Append(%d events) = %d new, want %d", len(evs), n, wantNew)
	}
}

func mustCount(t *testing.T, s eventstore.Store) int64 {
	t.Helper()
	n, err := s.Count(context.Background())
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

func mustGet(t *testing.T, s eventstore.Store, src, msg string) []event.Event {
	t.Helper()
	got, err := s.Get(context.Background(), src, msg)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", src, msg, err)
	}
	return got
}

func mustList(t *testing.T, s eventstore.Store, q eventstore.Query) eventstore.Page {
	t.Helper()
	p, err := s.List(context.Background(), q)
	if err != nil {
		t.Fatalf("List(%+v): %v", q, err)
	}
	return p
}

// listAll walks every page of q and returns the events in order.
func listAll(t *testing.T, s eventstore.Store, q eventstore.Query) []event.Event {
	t.Helper()
	var all []event.Event
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("List(%+v): pagination does not end", q)
		}
		p := mustList(t, s, q)
		all = append(all, p.Events...)
		if p.Next == "" {
			return all
		}
		if len(p.Events) == 0 {
			t.Fatalf("List(%+v): empty page with a Next cursor", q)
		}
		q.Cursor = p.Next
	}
}

func closeStore(t *testing.T, s eventstore.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// sameTime reports whether got is want, allowing microsecond truncation,
// and requires non-zero times to come back in UTC.
func sameTime(got, want time.Time) bool {
	if want.IsZero() {
		return got.IsZero()
	}
	if got.Location() != time.UTC {
		return false
	}
	return got.Equal(want) || got.Equal(want.Truncate(time.Microsecond))
}

func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// diffEvent describes how got differs from want, or returns "".
func diffEvent(got, want event.Event) string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !sameTime(g, w) {
			d = append(d, fmt.Sprintf("%s = %v (%v), want %v", name, g, g.Location(), w))
		}
	}
	str("SourceID", got.SourceID, want.SourceID)
	str("MessageID", got.MessageID, want.MessageID)
	str("Type", got.Type, want.Type)
	str("Name", got.Name, want.Name)
	str("UserID", got.UserID, want.UserID)
	str("AnonymousID", got.AnonymousID, want.AnonymousID)
	str("GroupID", got.GroupID, want.GroupID)
	str("PreviousID", got.PreviousID, want.PreviousID)
	tm("Timestamp", got.Timestamp, want.Timestamp)
	tm("OriginalTimestamp", got.OriginalTimestamp, want.OriginalTimestamp)
	tm("SentAt", got.SentAt, want.SentAt)
	tm("ReceivedAt", got.ReceivedAt, want.ReceivedAt)
	if !jsonEqual(got.Raw, want.Raw) {
		d = append(d, fmt.Sprintf("Raw = %s, want %s", got.Raw, want.Raw))
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}

// checkEvents requires got to be want, in order.
func checkEvents(t *testing.T, got, want []event.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %d %v", len(got), keysOf(got), len(want), keysOf(want))
	}
	for i := range got {
		if d := diffEvent(got[i], want[i]); d != "" {
			t.Fatalf("event %d (%s/%s): %s", i, want[i].SourceID, want[i].MessageID, d)
		}
	}
}

func keysOf(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.SourceID + "/" + e.MessageID
	}
	return out
}

// listOrder is List's order: time, then source, then messageId.
func listOrder(a, b event.Event) int {
	return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.SourceID, b.SourceID), cmp.Compare(a.MessageID, b.MessageID))
}

func sorted(evs []event.Event) []event.Event {
	out := slices.Clone(evs)
	slices.SortFunc(out, listOrder)
	return out
}

// --- tests ---

func testRoundTrip(t *testing.T, s eventstore.Store) {
	full := fullEvent("src-1", "msg-full", baseTime)
	// Only required fields: empty strings and zero optional times must come
	// back empty and zero.
	minimal := event.Event{
		SourceID:    "src-1",
		MessageID:   "msg-min",
		Type:        "identify",
		AnonymousID: "anon-9",
		Timestamp:   baseTime.Add(time.Minute),
		ReceivedAt:  baseTime.Add(time.Minute),
		Raw:         []byte(`{"type":"identify","anonymousId":"anon-9"}`),
	}
	// Non-ASCII text, JSON escapes and characters that need care in SQL.
	odd := fullEvent("src-1", "msg-odd", baseTime.Add(2*time.Minute))
	odd.Type = "page"
	odd.Name = `Ünïcødé 🎉 "quoted" 'single' back\slash`
	odd.UserID = "user'; DROP TABLE events; --"
	odd.Raw = []byte(`{"type":"page","name":"\u00dcn\u00efc\u00f8d\u00e9 🎉 \"quoted\" 'single' back\\slash","userId":"user'; DROP TABLE events; --","tab":"\t"}`)

	evs := []event.Event{full, minimal, odd}
	mustAppend(t, s, evs, len(evs))
	for _, want := range evs {
		checkEvents(t, mustGet(t, s, want.SourceID, want.MessageID), []event.Event{want})
		checkEvents(t, mustGet(t, s, "", want.MessageID), []event.Event{want})
	}
	checkEvents(t, listAll(t, s, eventstore.Query{}), sorted(evs))
}

func testRoundTripTimes(t *testing.T, s eventstore.Store) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("UTC+1", 3600)
	}
	e := fullEvent("src-1", "msg-ns", time.Date(2024, 2, 29, 23, 59, 59, 123456789, paris))
	e.OriginalTimestamp = time.Date(2024, 2, 29, 23, 0, 0, 999, time.FixedZone("X", -7*3600))
	e.SentAt = time.Time{}
	e.ReceivedAt = time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC)
	old := fullEvent("src-1", "msg-old", time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC))
	mustAppend(t, s, []event.Event{e, old}, 2)
	for _, want := range []event.Event{e, old} {
		got := mustGet(t, s, want.SourceID, want.MessageID)
		checkEvents(t, got, []event.Event{want})
		if !got[0].SentAt.IsZero() && want.SentAt.IsZero() {
			t.Errorf("zero SentAt came back as %v", got[0].SentAt)
		}
	}
}

func testRoundTripRaw(t *testing.T, s eventstore.Store) {
	raws := []string{
		`{"type":"track","event":"A","userId":"u"}`,
		"{ \"type\" : \"track\",\n  \"event\": \"B\" ,\"userId\":\"u\", \"n\": 1.50e2, \"z\":{}\t}",
		`{"userId":"u","event":"C","type":"track","s":"\u00e9\ud83c\udf89","e":"é🎉","nul":"\u0000"}`,
	}
	var evs []event.Event
	for i, r := range raws {
		e := fullEvent("src-1", fmt.Sprintf("raw-%d", i), baseTime.Add(time.Duration(i)*time.Second))
		e.Raw = []byte(r)
		evs = append(evs, e)
	}
	mustAppend(t, s, evs, len(evs))
	for _, want := range evs {
		got := mustGet(t, s, want.SourceID, want.MessageID)
		checkEvents(t, got, []event.Event{want})
		if !bytes.Equal(got[0].Raw, want.Raw) {
			t.Logf("note: Raw is JSON-equal but not byte-equal: %s", got[0].Raw)
		}
	}
}

func testAppendEmpty(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, nil, 0)
	mustAppend(t, s, []event.Event{}, 0)
	if n := mustCount(t, s); n != 0 {
		t.Fatalf("Count = %d, want 0", n)
	}
}

func testDedupWithinBatch(t *testing.T, s eventstore.Store) {
	first := fullEvent("src-1", "dup", baseTime)
	second := fullEvent("src-1", "dup", baseTime.Add(time.Hour))
	second.Name = "Second"
	second.Raw = rawFor(second)
	other := fullEvent("src-1", "other", baseTime)
	mustAppend(t, s, []event.Event{first, other, second, first}, 2)
	checkEvents(t, mustGet(t, s, "src-1", "dup"), []event.Event{first})
	if n := mustCount(t, s); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
}

func testDedupAcrossBatches(t *testing.T, s eventstore.Store) {
	var a []event.Event
	for i := range 20 {
		a = append(a, fullEvent("src-1", fmt.Sprintf("m%02d", i), baseTime.Add(time.Duration(i)*time.Minute)))
	}
	mustAppend(t, s, a, len(a))
	mustAppend(t, s, a, 0)

	// Same keys with different content: still duplicates, first wins.
	changed := slices.Clone(a)
	for i := range changed {
		changed[i].Name = "Changed"
		changed[i].Timestamp = changed[i].Timestamp.Add(time.Hour)
		changed[i].Raw = rawFor(changed[i])
	}
	mustAppend(t, s, changed[:10], 0)

	// A mix of new and stored events counts only the new ones.
	mixed := append(slices.Clone(changed[5:15]), fullEvent("src-1", "new-1", baseTime), fullEvent("src-1", "new-2", baseTime))
	mustAppend(t, s, mixed, 2)

	if n := mustCount(t, s); n != int64(len(a)+2) {
		t.Fatalf("Count = %d, want %d", n, len(a)+2)
	}
	for i := range a {
		checkEvents(t, mustGet(t, s, "src-1", a[i].MessageID), a[i:i+1])
	}
}

func testSameMessageIDTwoSources(t *testing.T, s eventstore.Store) {
	a := fullEvent("src-a", "shared", baseTime)
	b := fullEvent("src-b", "shared", baseTime.Add(time.Second))
	b.UserID = "someone-else"
	b.Raw = rawFor(b)
	mustAppend(t, s, []event.Event{b, a}, 2)
	mustAppend(t, s, []event.Event{a, b}, 0)
	checkEvents(t, mustGet(t, s, "src-a", "shared"), []event.Event{a})
	checkEvents(t, mustGet(t, s, "src-b", "shared"), []event.Event{b})
	got := mustGet(t, s, "", "shared")
	slices.SortFunc(got, func(x, y event.Event) int { return cmp.Compare(x.SourceID, y.SourceID) })
	checkEvents(t, got, []event.Event{a, b})
	if n := mustCount(t, s); n != 2 {
		t.Fatalf("Count = %d, want 2", n)
	}
}

func testGetNotFound(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	for _, k := range [][2]string{{"src-1", "nope"}, {"", "nope"}, {"src-2", "here"}, {"src-1", "her"}, {"src-1", "here "}} {
		if _, err := s.Get(ctx, k[0], k[1]); !errors.Is(err, eventstore.ErrNotFound) {
			t.Errorf("Get(%q, %q) on an empty store: err = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	mustAppend(t, s, []event.Event{fullEvent("src-1", "here", baseTime)}, 1)
	for _, k := range [][2]string{{"src-1", "nope"}, {"", "nope"}, {"src-2", "here"}, {"src-1", "her"}, {"src-1", "here "}} {
		if _, err := s.Get(ctx, k[0], k[1]); !errors.Is(err, eventstore.ErrNotFound) {
			t.Errorf("Get(%q, %q): err = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}

func testCount(t *testing.T, s eventstore.Store) {
	if n := mustCount(t, s); n != 0 {
		t.Fatalf("Count of empty store = %d", n)
	}
	var evs []event.Event
	for i := range 37 {
		evs = append(evs, fullEvent(fmt.Sprintf("src-%d", i%3), fmt.Sprintf("m%d", i), baseTime))
	}
	mustAppend(t, s, evs[:20], 20)
	if n := mustCount(t, s); n != 20 {
		t.Fatalf("Count = %d, want 20", n)
	}
	mustAppend(t, s, evs, 17)
	if n := mustCount(t, s); n != 37 {
		t.Fatalf("Count = %d, want 37", n)
	}
}

// mixedEvents returns n events over 4 sources, 5 profiles, 3 types and 3
// names, with timestamps drawn from few distinct values so that ties occur,
// appended in random order.
func mixedEvents(n int, seed uint64) []event.Event {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	types := []string{"track", "page", "identify"}
	names := []string{"Signed Up", "Order Completed", "Home"}
	evs := make([]event.Event, n)
	for i := range evs {
		ts := baseTime.Add(time.Duration(r.IntN(n/3+1)) * time.Second).Add(time.Duration(r.IntN(3)) * time.Microsecond)
		e := fullEvent(fmt.Sprintf("src-%d", r.IntN(4)), fmt.Sprintf("msg-%05d", i), ts)
		e.Type = types[r.IntN(len(types))]
		e.Name = names[r.IntN(len(names))]
		if e.Type == "identify" {
			e.Name = ""
		}
		e.UserID = fmt.Sprintf("user-%d", r.IntN(5))
		e.AnonymousID = fmt.Sprintf("anon-%d", r.IntN(5))
		if r.IntN(4) == 0 {
			e.UserID = ""
		}
		e.Raw = rawFor(e)
		evs[i] = e
	}
	return evs
}

func testListOrder(t *testing.T, s eventstore.Store) {
	evs := mixedEvents(300, 1)
	// Exact ties on time: order falls to source, then messageId.
	for _, src := range []string{"src-b", "src-a", "src-c"} {
		for _, msg := range []string{"z", "a", "m"} {
			evs = append(evs, fullEvent(src, msg, baseTime.Add(50*time.Second)))
		}
	}
	for i := 0; i < len(evs); i += 64 {
		mustAppend(t, s, evs[i:min(i+64, len(evs))], min(64, len(evs)-i))
	}
	got := mustList(t, s, eventstore.Query{Limit: 1000})
	if got.Next != "" {
		t.Fatalf("List of %d events with Limit 1000 has Next %q", len(evs), got.Next)
	}
	checkEvents(t, got.Events, sorted(evs))
}

func testListFilters(t *testing.T, s eventstore.Store) {
	evs := mixedEvents(400, 2)
	mustAppend(t, s, evs, len(evs))
	from, to := baseTime.Add(20*time.Second), baseTime.Add(90*time.Second)
	queries := []eventstore.Query{
		{SourceID: "src-1"},
		{SourceID: "src-nope"},
		{Profile: "user-3"},
		{Profile: "anon-2"},
		{Profile: "nobody"},
		{Type: "page"},
		{Name: "Order Completed"},
		{From: from},
		{To: to},
		{From: from, To: to},
		{From: to, To: from},
		{SourceID: "src-2", Profile: "user-1", Type: "track", Name: "Signed Up", From: from, To: to},
		{SourceID: "src-0", Type: "identify"},
	}
	for _, q := range queries {
		var want []event.Event
		for _, e := range evs {
			if match(e, q) {
				want = append(want, e)
			}
		}
		q.Limit = 1000
		got := mustList(t, s, q)
		if got.Next != "" {
			t.Errorf("List(%+v): Next = %q with %d results", q, got.Next, len(got.Events))
		}
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) { checkEvents(t, got.Events, sorted(want)) })
	}
}

func match(e event.Event, q eventstore.Query) bool {
	return (q.SourceID == "" || e.SourceID == q.SourceID) &&
		(q.Profile == "" || eventstore.ProfileOf("", e.UserID, e.AnonymousID) == q.Profile) &&
		(q.Type == "" || e.Type == q.Type) &&
		(q.Name == "" || e.Name == q.Name) &&
		(q.From.IsZero() || !e.Timestamp.Before(q.From)) &&
		(q.To.IsZero() || e.Timestamp.Before(q.To))
}

func testListTimeRange(t *testing.T, s eventstore.Store) {
	from := baseTime
	to := baseTime.Add(time.Hour)
	at := map[string]time.Time{
		"before-from": from.Add(-time.Microsecond),
		"at-from":     from,
		"after-from":  from.Add(time.Microsecond),
		"before-to":   to.Add(-time.Microsecond),
		"at-to":       to,
		"after-to":    to.Add(time.Microsecond),
	}
	var evs []event.Event
	for msg, ts := range at {
		evs = append(evs, fullEvent("src-1", msg, ts))
	}
	mustAppend(t, s, evs, len(evs))
	got := mustList(t, s, eventstore.Query{From: from, To: to})
	want := []event.Event{}
	for _, m := range []string{"at-from", "after-from", "before-to"} {
		want = append(want, fullEvent("src-1", m, at[m]))
	}
	checkEvents(t, got.Events, want)
	// Bounds given in another zone are the same instants.
	est := time.FixedZone("EST", -5*3600)
	checkEvents(t, mustList(t, s, eventstore.Query{From: from.In(est), To: to.In(est)}).Events, want)
	// From only, To only.
	checkEvents(t, mustList(t, s, eventstore.Query{From: to}).Events,
		[]event.Event{fullEvent("src-1", "at-to", at["at-to"]), fullEvent("src-1", "after-to", at["after-to"])})
	checkEvents(t, mustList(t, s, eventstore.Query{To: from}).Events,
		[]event.Event{fullEvent("src-1", "before-from", at["before-from"])})
	// An empty range.
	if got := mustList(t, s, eventstore.Query{From: from, To: from}); len(got.Events) != 0 || got.Next != "" {
		t.Fatalf("List of empty range: %v, Next %q", keysOf(got.Events), got.Next)
	}
}

func testListPagination(t *testing.T, s eventstore.Store) {
	evs := mixedEvents(245, 3) // 35 pages of 7
	for i := 0; i < len(evs); i += 50 {
		mustAppend(t, s, evs[i:min(i+50, len(evs))], min(50, len(evs)-i))
	}
	want := sorted(evs)
	q := eventstore.Query{Limit: 7}
	var got []event.Event
	pages := 0
	for {
		p := mustList(t, s, q)
		pages++
		if len(p.Events) != 7 {
			t.Fatalf("page %d has %d events, want 7", pages, len(p.Events))
		}
		got = append(got, p.Events...)
		if p.Next == "" {
			break
		}
		if pages > 35 {
			t.Fatalf("more than 35 pages")
		}
		q.Cursor = p.Next
	}
	if pages != 35 {
		t.Fatalf("%d pages, want 35", pages)
	}
	checkEvents(t, got, want)

	// Events appended during a walk after the cursor's position are seen;
	// the walk still visits every event once.
	q = eventstore.Query{Limit: 100}
	p := mustList(t, s, q)
	late := fullEvent("src-9", "late", want[len(want)-1].Timestamp.Add(time.Hour))
	mustAppend(t, s, []event.Event{late}, 1)
	rest := listAll(t, s, eventstore.Query{Limit: 100, Cursor: p.Next})
	checkEvents(t, append(p.Events, rest...), append(slices.Clone(want), late))
}

func testListPaginationFiltered(t *testing.T, s eventstore.Store) {
	evs := mixedEvents(300, 4)
	mustAppend(t, s, evs, len(evs))
	for _, q := range []eventstore.Query{
		{Profile: "user-2", Limit: 3},
		{SourceID: "src-3", Type: "track", Limit: 5},
		{From: baseTime.Add(10 * time.Second), To: baseTime.Add(60 * time.Second), Limit: 4},
		{Name: "Home", Limit: 1},
	} {
		var want []event.Event
		for _, e := range evs {
			if match(e, q) {
				want = append(want, e)
			}
		}
		checkEvents(t, listAll(t, s, q), sorted(want))
	}
}

func testListLimits(t *testing.T, s eventstore.Store) {
	evs := mixedEvents(1100, 5)
	mustAppend(t, s, evs, len(evs))
	for _, c := range []struct{ limit, want int }{{0, 100}, {1, 1}, {1000, 1000}, {1001, 1000}, {5000, 1000}} {
		p := mustList(t, s, eventstore.Query{Limit: c.limit})
		if len(p.Events) != c.want || p.Next == "" {
			t.Errorf("List(Limit %d): %d events, Next %q; want %d events and a Next", c.limit, len(p.Events), p.Next, c.want)
		}
	}
	// Exactly a full last page: no further (empty) page.
	p := mustList(t, s, eventstore.Query{Limit: 1000})
	p = mustList(t, s, eventstore.Query{Limit: 100, Cursor: p.Next})
	if len(p.Events) != 100 || p.Next != "" {
		t.Errorf("last page: %d events, Next %q; want 100 events and no Next", len(p.Events), p.Next)
	}
}

func testListBadCursor(t *testing.T, s eventstore.Store) {
	mustAppend(t, s, mixedEvents(10, 6), 10)
	for _, c := range []string{"garbage!", "%%%", "AAAA", "aGVsbG8gd29ybGQ", "////", "=", "\x00", "eyJ0cyI6MX0="} {
		_, err := s.List(context.Background(), eventstore.Query{Cursor: c})
		if !errors.Is(err, eventstore.ErrBadCursor) {
			t.Errorf("List(Cursor %q): err = %v, want ErrBadCursor", c, err)
		}
	}
}

func testConcurrentAppend(t *testing.T, s eventstore.Store) {
	const workers, batches, perBatch, pool = 8, 15, 40, 500
	// Every version of a key has the same content, so whichever is first
	// the stored event is known.
	byKey := make(map[string]event.Event)
	keyEvent := func(src string, id int) event.Event {
		k := fmt.Sprintf("%s/%d", src, id)
		if e, ok := byKey[k]; ok {
			return e
		}
		e := fullEvent(src, fmt.Sprintf("c-%04d", id), baseTime.Add(time.Duration(id)*time.Millisecond))
		byKey[k] = e
		return e
	}
	work := make([][][]event.Event, workers)
	for w := range work {
		r := rand.New(rand.NewPCG(uint64(w), 42))
		for range batches {
			var b []event.Event
			for range perBatch {
				b = append(b, keyEvent(fmt.Sprintf("src-%d", r.IntN(2)), r.IntN(pool)))
			}
			work[w] = append(work[w], b)
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for w := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range work[w] {
				n, err := s.Append(context.Background(), b)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if total != len(byKey) {
		t.Errorf("Appends returned %d new in total, want %d distinct", total, len(byKey))
	}
	if n := mustCount(t, s); n != int64(len(byKey)) {
		t.Errorf("Count = %d, want %d", n, len(byKey))
	}
	want := make([]event.Event, 0, len(byKey))
	for _, e := range byKey {
		want = append(want, e)
	}
	checkEvents(t, listAll(t, s, eventstore.Query{Limit: 1000}), sorted(want))
}

// testConcurrentReaders appends batches while readers count and list: a
// reader must never see part of a batch.
func testConcurrentReaders(t *testing.T, s eventstore.Store) {
	const batches, size = 20, 250
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for ctx.Err() == nil {
				var n int64
				if r == 0 {
					var err error
					if n, err = s.Count(ctx); err != nil {
						if ctx.Err() == nil {
							t.Errorf("Count: %v", err)
						}
						return
					}
				} else {
					p, err := s.List(ctx, eventstore.Query{Limit: 1000, SourceID: "src-r"})
					if err != nil {
						if ctx.Err() == nil {
							t.Errorf("List: %v", err)
						}
						return
					}
					n = int64(len(p.Events))
					if n == 1000 {
						continue
					}
				}
				if n%size != 0 || n < last {
					t.Errorf("reader saw %d events (before: %d): not whole batches of %d", n, last, size)
					return
				}
				last = n
			}
		}()
	}
	for b := range batches {
		evs := make([]event.Event, size)
		for i := range evs {
			evs[i] = fullEvent("src-r", fmt.Sprintf("b%02d-%03d", b, i), baseTime.Add(time.Duration(b*size+i)*time.Second))
		}
		mustAppend(t, s, evs, size)
	}
	cancel()
	wg.Wait()
}

// testAtomicOnCancel cancels Appends at varying moments: an Append that
// fails must leave nothing of its batch visible, one that succeeds must
// have stored all of it.
func testAtomicOnCancel(t *testing.T, s eventstore.Store) {
	const size = 3000
	mkBatch := func(b int) []event.Event {
		evs := make([]event.Event, size)
		for i := range evs {
			evs[i] = fullEvent(fmt.Sprintf("atomic-%d", b), fmt.Sprintf("m%04d", i), baseTime.Add(time.Duration(i)*time.Millisecond))
		}
		return evs
	}
	check := func(b int, n int, err error, stored *int64) {
		t.Helper()
		count := mustCount(t, s)
		page := mustList(t, s, eventstore.Query{SourceID: fmt.Sprintf("atomic-%d", b), Limit: 1000})
		if err != nil {
			if n != 0 {
				t.Errorf("failed Append returned %d new", n)
			}
			if count != *stored || len(page.Events) != 0 {
				t.Fatalf("after failed Append (%v): Count %d (want %d), %d events of the batch visible", err, count, *stored, len(page.Events))
			}
			return
		}
		*stored += size
		if n != size || count != *stored || len(page.Events) != 1000 {
			t.Fatalf("after successful Append: n %d, Count %d (want %d), %d events of the batch visible", n, count, *stored, len(page.Events))
		}
	}
	var stored int64

	// Cancelled before the call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.Append(ctx, mkBatch(0))
	check(0, n, err, &stored)

	// Cancelled during the call, at growing delays, until an Append
	// succeeds; this usually cancels some mid-way.
	var sawErr bool
	deadline := time.Now().Add(10 * time.Second)
	for b, delay := 1, time.Duration(0); time.Now().Before(deadline); b, delay = b+1, delay+delay/4+200*time.Microsecond {
		ctx, cancel := context.WithTimeout(context.Background(), delay)
		n, err := s.Append(ctx, mkBatch(b))
		cancel()
		check(b, n, err, &stored)
		sawErr = sawErr || err != nil
		if err == nil {
			break
		}
	}
	if !sawErr {
		t.Log("note: no Append failed on cancellation; atomicity not exercised")
	}
}

// testProfileLinks checks that a Profile query follows the links identity
// resolution writes, including to events stored before the link, and that
// relinking (an unmerge) and unlinking move events back.
func testProfileLinks(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	ev := func(msg, uid, aid string, sec int) event.Event {
		e := fullEvent("src-1", msg, baseTime.Add(time.Duration(sec)*time.Second))
		e.UserID, e.AnonymousID = uid, aid
		e.Raw = rawFor(e)
		return e
	}
	evs := []event.Event{
		ev("m1", "", "anon-a", 1),    // web visit before login
		ev("m2", "u-1", "anon-a", 2), // login
		ev("m3", "", "anon-b", 3),    // another device
		ev("m4", "u-2", "", 4),       // someone else
		ev("m5", "", "prf-1", 5),     // raw id equal to a profile id, linked elsewhere below
	}
	mustAppend(t, s, evs, len(evs))
	profile := func(p string) []string {
		t.Helper()
		var got []string
		for _, e := range listAll(t, s, eventstore.Query{Profile: p}) {
			got = append(got, e.MessageID)
		}
		return got
	}
	link := func(links ...eventstore.ProfileLink) {
		t.Helper()
		if err := s.LinkProfiles(ctx, links); err != nil {
			t.Fatalf("LinkProfiles: %v", err)
		}
	}
	if got := profile("anon-a"); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("unlinked Profile anon-a = %v, want [m1] (m2 has a userId)", got)
	}
	link(eventstore.ProfileLink{Key: "anonymous_id:anon-a", ProfileID: "prf-1"},
		eventstore.ProfileLink{Key: "user_id:u-1", ProfileID: "prf-1"},
		eventstore.ProfileLink{Key: "anonymous_id:anon-b", ProfileID: "prf-1"},
		eventstore.ProfileLink{Key: "anonymous_id:prf-1", ProfileID: "prf-9"},
		eventstore.ProfileLink{Key: "user_id:u-2", ProfileID: "prf-2"})
	if got := profile("prf-1"); !slices.Equal(got, []string{"m1", "m2", "m3"}) {
		t.Errorf("Profile prf-1 = %v, want [m1 m2 m3]", got)
	}
	if got := profile("u-1"); len(got) != 0 {
		t.Errorf("Profile u-1 (linked) = %v, want none", got)
	}
	if got := profile("prf-9"); !slices.Equal(got, []string{"m5"}) {
		t.Errorf("Profile prf-9 = %v, want [m5]", got)
	}
	keys, err := s.ProfileLinks(ctx, "prf-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"anonymous_id:anon-a", "anonymous_id:anon-b", "user_id:u-1"}; !slices.Equal(keys, want) {
		t.Errorf("ProfileLinks(prf-1) = %v, want %v", keys, want)
	}
	// Unmerge: anon-b goes to its own profile; the same links twice and a
	// repeated key in one call (the last wins) change nothing more.
	for range 2 {
		link(eventstore.ProfileLink{Key: "anonymous_id:anon-b", ProfileID: "prf-1"},
			eventstore.ProfileLink{Key: "anonymous_id:anon-b", ProfileID: "prf-3"})
	}
	if got := profile("prf-1"); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("after relink Profile prf-1 = %v, want [m1 m2]", got)
	}
	if got := profile("prf-3"); !slices.Equal(got, []string{"m3"}) {
		t.Errorf("after relink Profile prf-3 = %v, want [m3]", got)
	}
	// Unlink: the event is found by its raw id again.
	link(eventstore.ProfileLink{Key: "user_id:u-2"})
	if got := profile("u-2"); !slices.Equal(got, []string{"m4"}) {
		t.Errorf("after unlink Profile u-2 = %v, want [m4]", got)
	}
	if got := profile("prf-2"); len(got) != 0 {
		t.Errorf("after unlink Profile prf-2 = %v, want none", got)
	}
	if err := s.LinkProfiles(ctx, nil); err != nil {
		t.Errorf("LinkProfiles(nil): %v", err)
	}
}

// testProfileLinksNew: links marked New are links like the others, and
// one marked New for a key that has a link after all (a resolution that
// wrote its links and failed before its own commit, then ran again)
// replaces it: one link per key, the latest.
func testProfileLinksNew(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	ev := func(msg, uid, aid string, sec int) event.Event {
		e := fullEvent("src-1", msg, baseTime.Add(time.Duration(sec)*time.Second))
		e.UserID, e.AnonymousID = uid, aid
		e.Raw = rawFor(e)
		return e
	}
	mustAppend(t, s, []event.Event{ev("m1", "", "anon-a", 1), ev("m2", "u-1", "anon-a", 2), ev("m3", "u-2", "", 3)}, 3)
	profile := func(p string) []string {
		t.Helper()
		var got []string
		for _, e := range listAll(t, s, eventstore.Query{Profile: p}) {
			got = append(got, e.MessageID)
		}
		return got
	}
	link := func(links ...eventstore.ProfileLink) {
		t.Helper()
		if err := s.LinkProfiles(ctx, links); err != nil {
			t.Fatalf("LinkProfiles: %v", err)
		}
	}
	link(eventstore.ProfileLink{Key: "anonymous_id:anon-a", ProfileID: "prf-1", New: true},
		eventstore.ProfileLink{Key: "user_id:u-1", ProfileID: "prf-1", New: true})
	if got := profile("prf-1"); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("Profile prf-1 = %v, want [m1 m2]", got)
	}
	// The same key New again, beside a key that is new indeed: the whole
	// call still lands, and u-1 has one link, the new one.
	link(eventstore.ProfileLink{Key: "user_id:u-2", ProfileID: "prf-2", New: true},
		eventstore.ProfileLink{Key: "user_id:u-1", ProfileID: "prf-2", New: true})
	if got := profile("prf-2"); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("Profile prf-2 = %v, want [m2 m3]", got)
	}
	if got := profile("prf-1"); !slices.Equal(got, []string{"m1"}) {
		t.Errorf("Profile prf-1 after the relink = %v, want [m1]", got)
	}
	for p, want := range map[string][]string{"prf-1": {"anonymous_id:anon-a"}, "prf-2": {"user_id:u-1", "user_id:u-2"}} {
		if keys, err := s.ProfileLinks(ctx, p); err != nil || !slices.Equal(keys, want) {
			t.Errorf("ProfileLinks(%s) = %v, %v; want %v", p, keys, err, want)
		}
	}
	// A key repeated in one call, New and then not: the last link wins.
	link(eventstore.ProfileLink{Key: "anonymous_id:anon-b", ProfileID: "prf-3", New: true},
		eventstore.ProfileLink{Key: "anonymous_id:anon-b", ProfileID: "prf-4"})
	if keys, err := s.ProfileLinks(ctx, "prf-4"); err != nil || !slices.Equal(keys, []string{"anonymous_id:anon-b"}) {
		t.Errorf("ProfileLinks(prf-4) = %v, %v; want [anonymous_id:anon-b]", keys, err)
	}
	if keys, err := s.ProfileLinks(ctx, "prf-3"); err != nil || len(keys) != 0 {
		t.Errorf("ProfileLinks(prf-3) = %v, %v; want none", keys, err)
	}
}

// testErase: Erase deletes the events of the given profile keys (a user
// id's, and an anonymous id's events without a user id) and their links,
// and leaves another person's events and links alone.
func testErase(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	ev := func(msg, uid, aid string, sec int) event.Event {
		e := fullEvent("src-1", msg, baseTime.Add(time.Duration(sec)*time.Second))
		e.UserID, e.AnonymousID = uid, aid
		e.Raw = rawFor(e)
		return e
	}
	evs := []event.Event{
		ev("m1", "", "anon-a", 1),    // the subject's visit before login
		ev("m2", "u-1", "anon-a", 2), // their login
		ev("m3", "u-1", "", 3),
		ev("m4", "u-2", "anon-a", 4), // someone else on the same browser: a user id of their own
		ev("m5", "", "anon-b", 5),    // someone else
	}
	mustAppend(t, s, evs, len(evs))
	if err := s.LinkProfiles(ctx, []eventstore.ProfileLink{
		{Key: "anonymous_id:anon-a", ProfileID: "prf-1"}, {Key: "user_id:u-1", ProfileID: "prf-1"},
		{Key: "user_id:u-2", ProfileID: "prf-2"}, {Key: "anonymous_id:anon-b", ProfileID: "prf-2"},
	}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Erase(ctx, []string{"anonymous_id:anon-a", "user_id:u-1"})
	if err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3", n, err)
	}
	for _, m := range []string{"m1", "m2", "m3"} {
		if got, err := s.Get(ctx, "", m); !errors.Is(err, eventstore.ErrNotFound) {
			t.Errorf("Get(%s) after erase: %v, %v", m, got, err)
		}
	}
	if got := listAll(t, s, eventstore.Query{Profile: "prf-1"}); len(got) != 0 {
		t.Errorf("profile prf-1 after erase: %v", keysOf(got))
	}
	if links, err := s.ProfileLinks(ctx, "prf-1"); err != nil || len(links) != 0 {
		t.Errorf("links of prf-1 after erase: %v, %v", links, err)
	}
	if got := keysOf(listAll(t, s, eventstore.Query{Profile: "prf-2"})); !slices.Equal(got, []string{"src-1/m4", "src-1/m5"}) {
		t.Errorf("profile prf-2 after erase: %v", got)
	}
	if links, err := s.ProfileLinks(ctx, "prf-2"); err != nil || len(links) != 2 {
		t.Errorf("links of prf-2 after erase: %v, %v", links, err)
	}
	if c := mustCount(t, s); c != 2 {
		t.Errorf("Count after erase = %d, want 2", c)
	}
	if n, err := s.Erase(ctx, []string{"user_id:nobody"}); err != nil || n != 0 {
		t.Errorf("Erase of nobody = %d, %v", n, err)
	}
}

// testExpire: Expire deletes the events of one source older than a time,
// and leaves the newer ones and the other sources' alone.
func testExpire(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	ev := func(src, msg string, sec int) event.Event {
		e := fullEvent(src, msg, baseTime.Add(time.Duration(sec)*time.Second))
		e.Raw = rawFor(e)
		return e
	}
	evs := []event.Event{ev("src-a", "a1", 1), ev("src-a", "a2", 2), ev("src-a", "a3", 10), ev("src-b", "b1", 1), ev("src-b", "b2", 10)}
	mustAppend(t, s, evs, len(evs))
	n, err := s.Expire(ctx, "src-a", baseTime.Add(10*time.Second))
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	if got := keysOf(listAll(t, s, eventstore.Query{})); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"src-a/a3", "src-b/b1", "src-b/b2"}) {
		t.Errorf("after Expire: %v, want a3, b1, b2", got)
	}
	for _, m := range []string{"a1", "a2"} {
		if got, err := s.Get(ctx, "src-a", m); !errors.Is(err, eventstore.ErrNotFound) {
			t.Errorf("Get(%s) after expire: %v, %v", m, got, err)
		}
	}
	for _, m := range []string{"a3", "b1", "b2"} {
		if _, err := s.Get(ctx, "", m); err != nil {
			t.Errorf("Get(%s) after expire: %v", m, err)
		}
	}
	if n, err := s.Expire(ctx, "src-a", baseTime.Add(10*time.Second)); err != nil || n != 0 {
		t.Errorf("Expire again = %d, %v; want 0", n, err)
	}
	// An expired event may be stored again (the log replays it): it is new.
	mustAppend(t, s, evs[:1], 1)
}
