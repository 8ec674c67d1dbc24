package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
)

// TestLinksWhileAppending writes profile links and appends events at the
// same time, as the pipeline does with successive batches, and then after
// a reopen finds every event and every link.
func TestLinksWhileAppending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.duckdb")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const rounds, per = 20, 500
	ts := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for r := range rounds {
			batch := make([]event.Event, per)
			for i := range batch {
				batch[i] = testEvent("src", fmt.Sprintf("m-%d-%d", r, i), ts.Add(time.Duration(r*per+i)*time.Millisecond))
			}
			if _, err := s.Append(ctx, batch); err != nil {
				errs <- fmt.Errorf("append round %d: %w", r, err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for r := range rounds {
			links := make([]eventstore.ProfileLink, per)
			for i := range links {
				// Every other round moves the keys of the round before.
				links[i] = eventstore.ProfileLink{Key: fmt.Sprintf("user_id:u-%d-%d", r/2, i), ProfileID: fmt.Sprintf("prf_%d", r)}
			}
			if err := s.LinkProfiles(ctx, links); err != nil {
				errs <- fmt.Errorf("link round %d: %w", r, err)
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.Count(ctx); err != nil || n != rounds*per {
		t.Errorf("Count = %d, %v; want %d", n, err, rounds*per)
	}
	for r := range rounds {
		keys, err := s.ProfileLinks(ctx, fmt.Sprintf("prf_%d", r))
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if r%2 == 1 {
			want = per // the odd round moved the even round's keys to itself
		}
		if len(keys) != want {
			t.Errorf("prf_%d has %d keys, want %d", r, len(keys), want)
		}
	}
}
