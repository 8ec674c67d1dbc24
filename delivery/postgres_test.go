package delivery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"tandem/delivery"
	"tandem/statestore/postgres"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// TestPostgres runs destinations, dead letters and a replay on a
// PostgreSQL state store.
func TestPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, testserver.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := newRigOn(t, db, delivery.RetryPolicy{MaxAttempts: 2, Base: 5 * time.Millisecond, Max: 10 * time.Millisecond}, "127.0.0.0/8")
	var up atomic.Bool
	rc := newReceiver(t, func(int64) (int, string, time.Duration) {
		if up.Load() {
			return 200, "", 0
		}
		return 503, "", 0
	})
	d := r.create("pg", rc.srv.URL, nil, r.admin)
	time.Sleep(200 * time.Millisecond)
	ids := r.send(users[:2], 5)
	waitFor(t, "dead letters", 20*time.Second, func() bool {
		dls, err := r.m.DeadLetters(ctx, d.ID, 100, "")
		return err == nil && len(dls) == len(ids)
	})
	up.Store(true)
	if n, err := r.m.Replay(ctx, d.ID); err != nil || n != len(ids) {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitFor(t, "the replay", 20*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, d.ID, 100, "")
		return rc.hasAll(ids) && len(dls) == 0
	})
	rc.checkOrder()
}
