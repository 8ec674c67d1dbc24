package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
)

// TestEraseWithReaders: the store's reads running beside erasures (each
// one swapping the database file) all succeed and see the erasures.
func TestEraseWithReaders(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "events.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ts := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range 20000 {
		evs = append(evs, event.Event{SourceID: "src", MessageID: fmt.Sprintf("m-%d", i), Type: "track", Name: "Viewed",
			UserID: fmt.Sprintf("u-%d", i%100), Timestamp: ts.Add(time.Duration(i) * time.Second), ReceivedAt: ts, Raw: []byte(`{"a":1}`)})
	}
	if _, err := s.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fails, ok atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.List(ctx, eventstore.Query{Limit: 1000})
				_, err2 := s.Count(ctx)
				if err != nil || err2 != nil {
					fails.Add(1)
					t.Errorf("read failed: %v / %v", err, err2)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := range 5 {
		if _, err := s.Erase(ctx, []string{fmt.Sprintf("user_id:u-%d", i)}); err != nil {
			t.Fatalf("erase: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if ok.Load() == 0 || fails.Load() > 0 {
		t.Errorf("reads: %d ok, %d failed", ok.Load(), fails.Load())
	}
	if n, err := s.Count(ctx); err != nil || n != 20000-5*200 {
		t.Errorf("Count = %d, %v", n, err)
	}
}
