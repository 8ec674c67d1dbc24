package duckdb

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"tandem/event"
)

// The heap goal the pacer's percent gives, live × (1 + p/100), is the
// filters plus (1 + base/100) times the rest of the live heap (at least
// paceMinOther), to within a percent of rounding.
func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		base         int
		live, pinned int64
	}{
		{100, 400 * mib, 300 * mib},
		{100, 330 * mib, 288 * mib},
		{50, 1000 * mib, 200 * mib},
		{100, 290 * mib, 288 * mib}, // rest below the floor
		{100, 200 * mib, 288 * mib}, // filter grew since the last GC
		{200, 64 * mib, 1 * mib},
	}
	for _, c := range cases {
		p := gcPercent(c.base, c.live, c.pinned)
		other := max(c.live-c.pinned, paceMinOther)
		live := c.pinned + other
		goal := float64(live) * (1 + float64(p)/100)
		want := float64(c.pinned) + float64(other)*(1+float64(c.base)/100)
		if goal < want-float64(live)/100 || goal > want+1 {
			t.Errorf("gcPercent(%d, %d MiB, %d MiB) = %d: goal %.0f MiB, want %.0f MiB", c.base, c.live/mib, c.pinned/mib, p, goal/mib, want/mib)
		}
	}
	if p := gcPercent(100, 500*mib, 0); p != 100 {
		t.Errorf("without filters the percent is %d, want the base 100", p)
	}
	// The rest of the heap keeps GOGC's headroom while the filters are
	// small, and gets half of it once they are large.
	for _, c := range []struct {
		base    int
		filters int64
		want    int
	}{{100, 0, 100}, {100, paceTightBytes - 1, 100}, {100, paceTightBytes, 50}, {100, 300 * mib, 50}, {1, 300 * mib, 1}} {
		if got := restPercent(c.base, c.filters); got != c.want {
			t.Errorf("restPercent(%d, %d MiB) = %d, want %d", c.base, c.filters/mib, got, c.want)
		}
	}
}

// A store's filter is counted in FilterBytes while it is open, as it
// grows, and no longer once it is closed; the pacer lowers the GC percent
// while a filter is large against the rest of the heap and restores it.
func TestFilterBytesAndPacer(t *testing.T) {
	t.Setenv("GOGC", "") // the pacer stands aside when GOGC is set
	before := FilterBytes()
	s, err := Open(t.TempDir() + "/e.duckdb")
	if err != nil {
		t.Fatal(err)
	}
	opened := FilterBytes() - before
	if opened <= 0 {
		t.Fatalf("an open store adds %d bytes to FilterBytes, want its partition state", opened)
	}
	var evs []event.Event
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20000 {
		evs = append(evs, event.Event{SourceID: "s", MessageID: fmt.Sprintf("m%d", i), Type: "track", Name: "x", UserID: "u", Timestamp: ts, ReceivedAt: ts, Raw: []byte(`{}`)})
	}
	if _, err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if got, want := FilterBytes()-before, s.DedupStats().Bytes; got != want {
		t.Errorf("FilterBytes grew by %d, the store's filter holds %d", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := FilterBytes(); got != before {
		t.Errorf("FilterBytes after Close = %d, want %d as before the open", got, before)
	}

	// The pacer: a large pinned allocation counted as a filter.
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	big := make([]byte, 256<<20)
	heldBytes.Add(int64(len(big)))
	defer heldBytes.Add(-int64(len(big)))
	stop := PaceGC()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		if p < 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent %d with a 256 MiB filter, want it lowered", p)
		}
		time.Sleep(50 * time.Millisecond)
		_ = big[len(big)-1]
	}
	stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GC percent after stop = %d, want 100 restored", p)
	}
	_ = big[0]
}
