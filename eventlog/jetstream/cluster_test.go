package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"tandem/eventlog"
	"tandem/eventlog/jetstream"
	"tandem/eventlog/logtest"
	"tandem/testserver"
)

func TestMain(m *testing.M) { testserver.Main(m) }

// streamFor names a stream after a test directory, so that each use of the
// contract suite's open gets a log of its own on the shared cluster.
func streamFor(dir string) string {
	h := fnv.New64a()
	h.Write([]byte(dir))
	return fmt.Sprintf("C%x", h.Sum64())
}

func openCluster(t testing.TB, url string, opts jetstream.Options) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// TestContractCluster runs the suite on a three-node cluster with streams
// of three replicas.
func TestContractCluster(t *testing.T) {
	c := testserver.SharedNATSCluster(t)
	logtest.Run(t, func(t *testing.T, dir string) eventlog.Log {
		name := streamFor(dir)
		return openCluster(t, c.URL(), jetstream.Options{Replicas: 3, Stream: name, Subject: "t." + name})
	})
}

// TestClusterConcurrentOpen: tandem nodes starting at once all open the
// same stream and consumer, even when one asks for a different limit, and
// they all write to that one stream.
func TestClusterConcurrentOpen(t *testing.T) {
	c := testserver.SharedNATSCluster(t)
	const nodes = 4
	logs := make([]*jetstream.Log, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := jetstream.Options{Replicas: 3, Stream: "SHARED", Subject: "t.shared"}
			if i == nodes-1 {
				opts.MaxAge = time.Hour // a node configured differently
			}
			<-start
			began := time.Now()
			l, err := jetstream.Open(c.URL(), opts)
			if err == nil {
				_, err = l.Consumer(t.Context(), "pipeline")
			}
			logs[i], errs[i] = l, err
			t.Logf("node %d opened the log and its consumer in %s", i, time.Since(began).Round(time.Millisecond))
		}()
	}
	close(start)
	wg.Wait()
	for i, l := range logs {
		if l != nil {
			defer l.Close()
		}
		if errs[i] != nil {
			t.Errorf("node %d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		return
	}
	seqs := map[uint64]bool{}
	for i, l := range logs {
		seq, err := l.Append(t.Context(), fmt.Appendf(nil, "from %d", i))
		if err != nil {
			t.Fatalf("node %d Append: %v", i, err)
		}
		seqs[seq] = true
	}
	st, err := logs[0].Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Msgs != nodes || len(seqs) != nodes || st.Consumers != 1 || st.Replicas != 3 {
		t.Fatalf("after one append per node: %+v, seqs %v; want %d records in one stream of 3 replicas and one consumer", st, seqs, nodes)
	}

	// A node asking for fewer replicas does not shrink the stream.
	l := openCluster(t, c.URL(), jetstream.Options{Replicas: 1, Stream: "SHARED", Subject: "t.shared"})
	defer l.Close()
	if st, err := l.Stats(t.Context()); err != nil || st.Replicas != 3 || st.Msgs != nodes {
		t.Fatalf("after an Open with Replicas 1: %+v, %v; want the stream of 3 replicas as it was", st, err)
	}
}

// killableDialer dials NATS servers until it is killed; then it cuts every
// connection it made and refuses new ones, as if its process had died.
type killableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (d *killableDialer) Dial(network, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, errors.New("dialer killed")
	}
	conn, err := net.DialTimeout(network, address, 2*time.Second)
	if err == nil {
		d.conns = append(d.conns, conn)
	}
	return conn, err
}

func (d *killableDialer) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	for _, c := range d.conns {
		c.Close()
	}
}

// TestClusterSharedConsumer: two logs (two tandem nodes) reading through
// the same durable consumer share the records, each record going to one of
// them; records held unacknowledged by a node that dies are delivered to
// the other after the ack wait, and nothing it acknowledged comes again.
func TestClusterSharedConsumer(t *testing.T) {
	ctx := t.Context()
	c := testserver.SharedNATSCluster(t)
	const ackWait = 2 * time.Second
	dialer := &killableDialer{}
	opts := jetstream.Options{Replicas: 3, AckWait: ackWait, Timeout: 2 * time.Second, Stream: "SHAREDCONSUMER", Subject: "t.sharedconsumer"}
	optsA := opts
	optsA.Name = "node-a"
	optsA.NATSOptions = []nats.Option{nats.SetCustomDialer(dialer)}
	a := openCluster(t, c.URL(), optsA)
	defer a.Close()
	optsB := opts
	optsB.Name = "node-b"
	b := openCluster(t, c.URL(), optsB)
	defer b.Close()

	const n = 200
	for i := range n {
		if _, err := a.Append(ctx, fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := a.Consumer(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Consumer(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}

	// Both read in turns until everything is processed: each record once.
	seen := map[uint64]string{}
	count := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		for _, r := range []struct {
			name string
			c    eventlog.Consumer
		}{{"a", ca}, {"b", cb}} {
			msgs, err := r.c.Fetch(ctx, 7, 200*time.Millisecond)
			if err != nil {
				t.Fatalf("%s Fetch: %v", r.name, err)
			}
			for _, m := range msgs {
				if prev, ok := seen[m.Seq]; ok {
					t.Fatalf("record %d delivered to %s after %s acknowledged it", m.Seq, r.name, prev)
				}
				seen[m.Seq] = r.name
				count[r.name]++
			}
			if err := r.c.Ack(ctx, msgs...); err != nil {
				t.Fatalf("%s Ack: %v", r.name, err)
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("processed %d of %d records", len(seen), n)
	}
	if count["a"] == 0 || count["b"] == 0 {
		t.Fatalf("work not shared: %v", count)
	}
	t.Logf("shared: %v", count)

	// A holds some records unacknowledged, B takes and acks others, then A
	// dies without releasing its records.
	var last uint64
	for i := range 20 {
		if last, err = b.Append(ctx, fmt.Appendf(nil, "late%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	held, err := ca.Fetch(ctx, 8, time.Second)
	if err != nil || len(held) == 0 {
		t.Fatalf("A Fetch: %d records, %v", len(held), err)
	}
	var taken []eventlog.Message
	for len(held)+len(taken) < 20 {
		msgs, err := cb.Fetch(ctx, 20, time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("B Fetch: %d records, %v (has %d, A holds %d)", len(msgs), err, len(taken), len(held))
		}
		taken = append(taken, msgs...)
	}
	if err := cb.Ack(ctx, taken...); err != nil {
		t.Fatal(err)
	}
	dialer.kill()
	died := time.Now()

	// B gets exactly A's records, once their ack wait has passed.
	var got []eventlog.Message
	for len(got) < len(held) && time.Since(died) < ackWait+10*time.Second {
		msgs, err := cb.Fetch(ctx, 20, time.Second)
		if err != nil {
			t.Fatalf("B Fetch after A died: %v", err)
		}
		got = append(got, msgs...)
	}
	if !slices.Equal(seqs(got), seqs(held)) {
		t.Fatalf("after A died B got %v, want A's unacknowledged %v", seqs(got), seqs(held))
	}
	took := time.Since(died)
	t.Logf("B took over A's %d records (up to seq %d) %s after A died", len(got), last, took.Round(10*time.Millisecond))
	if took < ackWait/2 {
		t.Errorf("A's records redelivered after %s, before the ack wait %s: a live node could lose them", took, ackWait)
	}
	if err := cb.Ack(ctx, got...); err != nil {
		t.Fatal(err)
	}
	if msgs, err := cb.Fetch(ctx, 20, ackWait+500*time.Millisecond); err != nil || len(msgs) > 0 {
		t.Fatalf("after everything was acknowledged: %v, %v", seqs(msgs), err)
	}
	if p, err := cb.Pending(ctx); err != nil || p != 0 {
		t.Fatalf("Pending = %d, %v; want 0", p, err)
	}
}

func seqs(msgs []eventlog.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// TestClusterQuorumLoss: with two of three servers down the log neither
// takes writes nor hangs: Append, Fetch and Ready fail within their
// timeouts, wrapping ErrUnavailable. Once a quorum is back everything
// works again, with every record acknowledged before the outage.
func TestClusterQuorumLoss(t *testing.T) {
	ctx := t.Context()
	c := testserver.StartNATSCluster(t, 3)
	const timeout = 2 * time.Second
	// A short ack wait: a pull the servers answered while the client had
	// given up (during the outage) leaves its record delivered but unacked;
	// it comes again after the ack wait, which the read after recovery
	// waits for.
	const ackWait = 3 * time.Second
	l := openCluster(t, c.URL(), jetstream.Options{Replicas: 3, Timeout: timeout, AckWait: ackWait})
	defer l.Close()
	before, err := l.Append(ctx, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := l.Consumer(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}

	c.Kill(1)
	c.Kill(2)
	down := time.Now()

	// Appends fail, each within its timeout. None may succeed: there is
	// no quorum to store it on.
	for range 2 {
		start := time.Now()
		seq, err := l.Append(ctx, []byte("during"))
		if err == nil {
			t.Fatalf("Append without a quorum succeeded (seq %d)", seq)
		}
		if !errors.Is(err, eventlog.ErrUnavailable) {
			t.Fatalf("Append without a quorum: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Fatalf("Append without a quorum took %s", d)
		}
	}
	// Ready says so, soon, and keeps saying so. Within peerSilence of the
	// loss the leader may not have noticed yet (and a client that
	// reconnects meanwhile may hear "ready" once more); after it, a "ready"
	// that follows a "not ready" is a failure.
	notReady := 0
	for notReady < 3 {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		start := time.Now()
		err := l.Ready(rctx)
		cancel()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Ready without a quorum took %s", d)
		}
		switch {
		case err != nil && !errors.Is(err, eventlog.ErrUnavailable):
			t.Fatalf("Ready without a quorum: %v, want ErrUnavailable", err)
		case err != nil:
			if notReady == 0 {
				t.Logf("not ready %s after losing the quorum: %v", time.Since(down).Round(10*time.Millisecond), err)
			}
			notReady++
		case notReady > 0 && time.Since(down) < 6*time.Second: // the log's peerSilence (5 s) and a second
			t.Logf("ready again %s after losing the quorum (the leader has not noticed yet)", time.Since(down).Round(10*time.Millisecond))
			notReady = 0
		case notReady > 0:
			t.Fatalf("Ready nil again without a quorum, %s after losing it", time.Since(down).Round(10*time.Millisecond))
		case time.Since(down) > 20*time.Second:
			t.Fatal("Ready still nil 20s after two of three servers died")
		}
		time.Sleep(300 * time.Millisecond)
	}
	// A read neither hangs nor invents records.
	start := time.Now()
	msgs, err := cons.Fetch(ctx, 10, time.Second)
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Fatalf("Fetch without a quorum took %s", d)
	}
	t.Logf("Fetch without a quorum: %d records, %v", len(msgs), err)
	if err == nil && len(msgs) > 0 && (len(msgs) != 1 || msgs[0].Seq != before) {
		t.Fatalf("Fetch without a quorum returned %v", seqs(msgs))
	}

	c.Restart(1)
	c.Restart(2)
	up := time.Now()
	for {
		err := l.Ready(ctx)
		if err == nil {
			break
		}
		if time.Since(up) > 30*time.Second {
			t.Fatalf("not ready 30s after the quorum came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, err := l.Append(ctx, []byte("after"))
	if err != nil {
		t.Fatalf("Append after recovery: %v", err)
	}
	t.Logf("ready and writable %s after the quorum came back", time.Since(up).Round(10*time.Millisecond))
	// The failed appends may or may not have been stored (an append that
	// timed out is unknown, not refused); the acknowledged ones must be.
	var ids []uint64
	for deadline := time.Now().Add(10*time.Second + 2*ackWait); time.Now().Before(deadline); {
		if slices.Contains(ids, before) && slices.Contains(ids, after) {
			break
		}
		msgs, err := cons.Fetch(ctx, 10, time.Second)
		if err != nil {
			t.Logf("Fetch after recovery: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, m := range msgs {
			ids = append(ids, m.Seq)
			if m.Seq != before && m.Seq != after && string(m.Data) != "during" {
				t.Fatalf("unexpected record %d %q", m.Seq, m.Data)
			}
		}
	}
	if !slices.Contains(ids, before) || !slices.Contains(ids, after) {
		t.Fatalf("after recovery read %v, want %d and %d among them", ids, before, after)
	}
}

// TestClusterSlowReaderKeepsRecords: a node still working on a record past
// the ack wait keeps it: the other node reading the same consumer does not
// get it a second time, and the slow node's ack then succeeds.
func TestClusterSlowReaderKeepsRecords(t *testing.T) {
	ctx := t.Context()
	c := testserver.SharedNATSCluster(t)
	const ackWait = 2 * time.Second
	opts := jetstream.Options{Replicas: 3, AckWait: ackWait, Timeout: 2 * time.Second, Stream: "SLOWREADER", Subject: "t.slowreader"}
	a := openCluster(t, c.URL(), opts)
	defer a.Close()
	b := openCluster(t, c.URL(), opts)
	defer b.Close()
	if _, err := a.Append(ctx, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	ca, err := a.Consumer(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Consumer(ctx, "pipeline")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := ca.Fetch(ctx, 1, 5*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("a Fetch: %d records, %v", len(msgs), err)
	}
	// b polls for three ack waits while a "works".
	for end := time.Now().Add(3 * ackWait); time.Now().Before(end); {
		got, err := cb.Fetch(ctx, 1, 200*time.Millisecond)
		if err != nil {
			t.Fatalf("b Fetch: %v", err)
		}
		if len(got) > 0 {
			t.Fatalf("record %d delivered to b while a still held it (%s after a fetched it)", got[0].Seq, time.Since(end.Add(-3*ackWait)).Round(time.Millisecond))
		}
	}
	if err := ca.Ack(ctx, msgs...); err != nil {
		t.Fatalf("a Ack after three ack waits: %v", err)
	}
	if n, err := cb.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending after the ack: %d, %v", n, err)
	}
}
