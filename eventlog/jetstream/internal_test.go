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
