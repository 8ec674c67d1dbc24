package delivery_test

import (
	"context"
	"testing"
	"time"

	"tandem/delivery"
	"tandem/statestore"
	"tandem/statestore/statetest"
)

// TestFlowsAndExpire, on every state store: delivered events are counted
// per source and destination for the catalogue's flows (added up across
// flushes), failed ones are not; retention's Expire removes the dead
// letters of a source's events received before a time, and only those.
func TestFlowsAndExpire(t *testing.T) {
	statetest.Each(t, func(t *testing.T, open func(t *testing.T) *statestore.DB) {
		ctx := context.Background()
		r := newRigOn(t, open(t), delivery.RetryPolicy{MaxAttempts: 1}, "127.0.0.0/8")
		ok := newReceiver(t, func(int64) (int, string, time.Duration) { return 200, "", 0 })
		refuse := newReceiver(t, func(int64) (int, string, time.Duration) { return 400, "", 0 })
		good := r.create("good", ok.srv.URL, nil, r.admin)
		bad := r.create("bad", refuse.srv.URL, nil, r.admin)
		time.Sleep(200 * time.Millisecond)
		ids := r.send(users[:2], 3)
		waitFor(t, "deliveries and dead letters", 20*time.Second, func() bool {
			dls, err := r.m.DeadLetters(ctx, bad.ID, 100, "")
			fs, ferr := r.m.Flows(ctx, time.Now().Add(-time.Hour))
			return err == nil && ferr == nil && len(dls) == len(ids) && len(fs) == 1 && fs[0].Events30d == int64(len(ids))
		})
		fs, _ := r.m.Flows(ctx, time.Now().Add(-time.Hour))
		if fs[0].From != "src_1" || fs[0].To != good.ID {
			t.Errorf("flows %+v, want src_1 → %s", fs, good.ID)
		}
		// More later add up.
		more := r.send(users[:1], 2)
		waitFor(t, "more deliveries and dead letters", 20*time.Second, func() bool {
			dls, err := r.m.DeadLetters(ctx, bad.ID, 100, "")
			fs, ferr := r.m.Flows(ctx, time.Now().Add(-time.Hour))
			return err == nil && ferr == nil && len(dls) == len(ids)+len(more) && len(fs) == 1 && fs[0].Events30d == int64(len(ids)+len(more))
		})

		// Expire: another source's and newer ones stay.
		if n, err := r.m.Expire(ctx, "src_other", time.Now().Add(time.Hour)); err != nil || n != 0 {
			t.Errorf("Expire of another source = %d, %v", n, err)
		}
		if n, err := r.m.Expire(ctx, "src_1", time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("Expire before the events = %d, %v", n, err)
		}
		n, err := r.m.Expire(ctx, "src_1", time.Now().Add(time.Hour))
		if err != nil || n != int64(len(ids)+len(more)) {
			t.Errorf("Expire = %d, %v; want %d", n, err, len(ids)+len(more))
		}
		if dls, _ := r.m.DeadLetters(ctx, bad.ID, 100, ""); len(dls) != 0 {
			t.Errorf("%d dead letters left", len(dls))
		}
		if a := r.m.Deliveries(bad.ID, 100); len(a) != 0 {
			t.Errorf("%d delivery attempts left", len(a))
		}
	})
}
