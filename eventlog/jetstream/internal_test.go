package jetstream

import (
	"testing"
	"time"

	jsapi "github.com/nats-io/nats.go/jetstream"
)

// TestEmbeddedConfig: the embedded server syncs every write and the stream
// is configured as documented.
func TestEmbeddedConfig(t *testing.T) {
	l, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir(), MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if cfg := l.srv.JetStreamConfig(); cfg == nil || !cfg.SyncAlways {
		t.Fatalf("embedded JetStream config %+v: want SyncAlways", cfg)
	}
	info, err := l.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != DefaultStream || len(c.Subjects) != 1 || c.Subjects[0] != DefaultSubject ||
		c.Storage != jsapi.FileStorage || c.Retention != jsapi.LimitsPolicy || c.Discard != jsapi.DiscardNew ||
		c.MaxBytes != 1<<30 || c.MaxAge != 0 || c.Replicas != 1 || c.PersistMode != jsapi.DefaultPersistMode ||
		int(c.MaxMsgSize) < DefaultMaxRecordBytes {
		t.Fatalf("stream config %+v", c)
	}
	if got := l.nc.MaxPayload(); got < int64(DefaultMaxRecordBytes+headerRoom) {
		t.Fatalf("max payload %d", got)
	}
}

// TestReadConsumerState: settle can read the server's consumer state
// files. If this fails after a nats-server upgrade, the format changed:
// Close then falls back to waiting ackSettle.
func TestReadConsumerState(t *testing.T) {
	ctx := t.Context()
	l, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 5 {
		if _, err := l.Append(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 5, time.Second)
	if err != nil || len(msgs) != 5 {
		t.Fatalf("Fetch: %d, %v", len(msgs), err)
	}
	if err := c.Ack(ctx, msgs[:2]...); err != nil {
		t.Fatal(err)
	}
	path := l.consumerStatePath("reader")
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, ok := readConsumerState(path)
		if ok && st.ackFloor == 2 && st.delivered == 5 && len(st.pending) == 3 {
			now := time.Now().Unix()
			for seq := uint64(3); seq <= 5; seq++ {
				if ts, ok := st.pending[seq]; !ok || ts < now-5 || ts > now+5 {
					t.Fatalf("pending %v: seq %d missing or delivered at a wrong time", st.pending, seq)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state file %s read as %+v (ok %v), want ack floor 2, delivered 5, 3 pending", path, st, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFetchBoundedInBytes: one Fetch brings as many small records as
// asked for (it used to count each at the largest record size: nine a
// fetch), and records of the largest size up to fetchBytes, the rest on
// the next fetches, in order, none lost.
func TestFetchBoundedInBytes(t *testing.T) {
	ctx := t.Context()
	l, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	small := make([]byte, 80<<10)
	for range 100 {
		if _, err := l.Append(ctx, small); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 100, 0)
	if err != nil || len(msgs) != 100 {
		t.Fatalf("Fetch of 100 records of 80 kB: %d, %v; want all in one", len(msgs), err)
	}
	if err := c.Ack(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	large := make([]byte, l.MaxRecordBytes())
	const n = 12 // 48 MiB: more than one fetch may bring
	for range n {
		if _, err := l.Append(ctx, large); err != nil {
			t.Fatal(err)
		}
	}
	want := msgs[len(msgs)-1].Seq + 1
	fetches := 0
	for got := 0; got < n; {
		msgs, err := c.Fetch(ctx, n, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fetches++
		if bytes := len(msgs) * len(large); len(msgs) > 1 && bytes > c.(*consumer).fetchBytes() {
			t.Fatalf("one fetch brought %d bytes, over the bound of %d", bytes, c.(*consumer).fetchBytes())
		}
		for _, m := range msgs {
			if m.Seq != want || len(m.Data) != len(large) {
				t.Fatalf("record seq %d (%d bytes), want seq %d", m.Seq, len(m.Data), want)
			}
			want++
		}
		if err := c.Ack(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		got += len(msgs)
		if fetches > n {
			t.Fatalf("%d fetches for %d records", fetches, n)
		}
	}
	if fetches < 2 {
		t.Fatalf("%d records of %d bytes in one fetch", n, len(large))
	}
}
