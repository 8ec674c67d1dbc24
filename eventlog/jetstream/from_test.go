package jetstream_test

import (
	"context"
	"testing"
	"time"

	"tandem/eventlog/jetstream"
)

// TestConsumerFrom: a new consumer starts at the first record stored at or
// after the given time; opened again (also after a restart) it keeps its
// position; DeleteConsumer removes it and its position.
func TestConsumerFrom(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: dir})
	for _, r := range []string{"old-1", "old-2"} {
		if _, err := l.Append(ctx, []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	for _, r := range []string{"new-1", "new-2"} {
		if _, err := l.Append(ctx, []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.ConsumerFrom(ctx, "from", start)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 2 || string(msgs[0].Data) != "new-1" || string(msgs[1].Data) != "new-2" {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	if err := c.Ack(ctx, msgs[0]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Opened again with a later start: it keeps its position.
	c, err = l.ConsumerFrom(ctx, "from", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "new-2" {
		t.Fatalf("fetch again: %v %v", msgs, err)
	}
	c.Close()
	l.Close()
	// After a restart (which releases what a dead process held), too.
	l = openEmbedded(t, jetstream.EmbeddedOptions{Dir: dir})
	// Shut the server down before the test's directory is removed.
	defer l.Close()
	c, err = l.ConsumerFrom(ctx, "from", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Data) != "new-2" {
		t.Fatalf("fetch after restart: %v %v", msgs, err)
	}
	c.Close()
	if err := l.DeleteConsumer(ctx, "from"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteConsumer(ctx, "from"); err != nil {
		t.Fatalf("delete again: %v", err)
	}
	// Gone: a new consumer of the name starts where it is told.
	c, err = l.ConsumerFrom(ctx, "from", start)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if msgs, err = c.Fetch(ctx, 10, time.Second); err != nil || len(msgs) != 2 {
		t.Fatalf("fetch after delete: %v %v", msgs, err)
	}
}
