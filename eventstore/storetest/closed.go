package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"tandem/event"
	"tandem/eventstore"
)

// RunClosed checks a store's Close: closing twice is not an error, and
// after Close every call fails with errClosed (the store's own sentinel).
// It closes s.
func RunClosed(t *testing.T, s eventstore.Store, errClosed error) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := s.Append(ctx, []event.Event{fullEvent("s", "m", time.Now())}); !errors.Is(err, errClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := s.Get(ctx, "s", "m"); !errors.Is(err, errClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, err := s.List(ctx, eventstore.Query{}); !errors.Is(err, errClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if _, err := s.Count(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Count after Close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
}
