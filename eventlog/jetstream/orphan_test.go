package jetstream

import (
	"context"
	"testing"
	"time"
)

// TestOrphanedRecordsRedeliveredAtOnce: records a process fetched but never
// acknowledged (it was killed) come back as soon as the log is reopened,
// not after the 30 s ack wait.
func TestOrphanedRecordsRedeliveredAtOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := OpenEmbedded(EmbeddedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Append(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.Consumer(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 1, time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	if err := c.Ack(ctx, msgs[0]); err != nil {
		t.Fatal(err)
	}
	if msgs, err = c.Fetch(ctx, 2, time.Second); err != nil || len(msgs) != 2 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	// Simulate the crash: the server goes away without the consumer
	// releasing what it holds.
	l.srv.Shutdown()
	l.srv.WaitForShutdown()
	l.nc.Close()
	l.lock.Close()

	l2, err := OpenEmbedded(EmbeddedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	c2, err := l2.Consumer(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := c2.Fetch(ctx, 10, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Fatalf("after reopen got %v, want records 2 and 3", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("orphaned records took %v to come back", d)
	}
}
