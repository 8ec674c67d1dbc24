package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/event"
	"tandem/eventlog"
	"tandem/eventlog/jetstream"
	"tandem/eventlog/logtest"
)

func openEmbedded(t testing.TB, opts jetstream.EmbeddedOptions) *jetstream.Log {
	t.Helper()
	l, err := jetstream.OpenEmbedded(opts)
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	// Close is idempotent: a test that closes the log itself loses nothing,
	// and one that does not still shuts the server down before its
	// directory is removed.
	t.Cleanup(func() { l.Close() })
	return l
}

func TestContract(t *testing.T) {
	logtest.Run(t, func(t *testing.T, dir string) eventlog.Log {
		return openEmbedded(t, jetstream.EmbeddedOptions{Dir: dir})
	})
}

// TestFull: a log at MaxBytes refuses Appends with ErrUnavailable (it
// neither drops old records nor pretends to take new ones), and Ready says
// so.
func TestFull(t *testing.T) {
	ctx := t.Context()
	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: t.TempDir(), MaxBytes: 64 << 10})
	defer l.Close()
	if err := l.Ready(ctx); err != nil {
		t.Fatalf("Ready on an empty log: %v", err)
	}
	rec := bytes.Repeat([]byte("r"), 1000)
	var appended []uint64
	var err error
	for range 200 {
		var seq uint64
		if seq, err = l.Append(ctx, rec); err != nil {
			break
		}
		appended = append(appended, seq)
	}
	if err == nil {
		t.Fatalf("200 KB appended to a 64 KiB log")
	}
	if !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Append to a full log: %v, want ErrUnavailable", err)
	}
	t.Logf("full after %d records: %v", len(appended), err)
	if len(appended) < 40 {
		t.Fatalf("only %d records of 1000 bytes fit in 64 KiB", len(appended))
	}
	if err := l.Ready(ctx); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Ready on a full log: %v, want ErrUnavailable", err)
	}
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Msgs != uint64(len(appended)) || st.FirstSeq != appended[0] || st.LastSeq != appended[len(appended)-1] {
		t.Fatalf("stats %+v after appending seqs %d..%d: records were dropped or added", st, appended[0], appended[len(appended)-1])
	}

	// The Committer passes the failure to its callers.
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()
	chunk := event.AppendEntries(nil, "src", []event.Event{{MessageID: "m", Raw: rec}}, nil)
	if err := cm.Append(ctx, chunk); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Committer.Append to a full log: %v, want ErrUnavailable", err)
	}
	if st := cm.Stats(); st.Failed != 1 || st.FailedChunks != 1 || st.Records != 0 {
		t.Fatalf("committer stats %+v", st)
	}

	// Everything that was acknowledged is readable.
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < len(appended) {
		msgs, err := c.Fetch(ctx, 100, time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("Fetch after %d of %d: %v", n, len(appended), err)
		}
		for _, m := range msgs {
			if m.Seq != appended[n] || !bytes.Equal(m.Data, rec) {
				t.Fatalf("record %d: seq %d, want %d", n, m.Seq, appended[n])
			}
			n++
		}
	}
}

func TestOptions(t *testing.T) {
	if _, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{}); err == nil {
		t.Fatal("OpenEmbedded without Dir: no error")
	}
	if _, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: t.TempDir(), MaxBytes: -1}); err == nil {
		t.Fatal("OpenEmbedded with negative MaxBytes: no error")
	}
	var logged syncBuffer
	dir := t.TempDir()
	l := openEmbedded(t, jetstream.EmbeddedOptions{
		Dir: dir, MaxRecordBytes: 100 << 10, Stream: "OTHER", Subject: "other.events",
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	defer l.Close()
	if !strings.Contains(logged.String(), "JetStream") {
		t.Fatalf("the server logged nothing about JetStream: %q", logged.String())
	}
	if l2, err := jetstream.OpenEmbedded(jetstream.EmbeddedOptions{Dir: dir}); err == nil {
		l2.Close()
		t.Fatal("a second log opened on the same Dir")
	}
	if got := l.MaxRecordBytes(); got != 100<<10 {
		t.Fatalf("MaxRecordBytes = %d", got)
	}
	if _, err := l.Append(t.Context(), make([]byte, 100<<10+1)); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("Append over MaxRecordBytes: %v", err)
	}
	if _, err := l.Consumer(t.Context(), "bad.name"); err == nil {
		t.Fatal("Consumer with a dot in its name: no error")
	}
	if _, err := l.Consumer(t.Context(), ""); err == nil {
		t.Fatal("Consumer with an empty name: no error")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAckUnknown: acking a record this consumer does not hold is an error,
// and acking twice is too.
func TestAckUnknown(t *testing.T) {
	ctx := t.Context()
	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: t.TempDir()})
	defer l.Close()
	if _, err := l.Append(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Fetch: %d records, %v", len(msgs), err)
	}
	if err := c.Ack(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(ctx, msgs...); err == nil {
		t.Fatal("second Ack: no error")
	}
	if err := c.Ack(ctx, eventlog.Message{Seq: 99}); err == nil {
		t.Fatal("Ack of an unknown seq: no error")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(ctx, 1, 0); !errors.Is(err, eventlog.ErrClosed) {
		t.Fatalf("Fetch after consumer Close: %v", err)
	}
}

// BenchmarkCommitter: 16 goroutines append chunks of 100 small events
// through a Committer to an embedded log that syncs every record.
func BenchmarkCommitter(b *testing.B) {
	const writers, perChunk = 16, 100
	l := openEmbedded(b, jetstream.EmbeddedOptions{Dir: b.TempDir()})
	defer l.Close()
	cm := eventlog.NewCommitter(l, eventlog.CommitterOptions{})
	defer cm.Close()

	evs := make([]event.Event, perChunk)
	now := time.Now()
	for i := range evs {
		evs[i] = event.Event{
			MessageID: fmt.Sprintf("msg-%032d", i), Type: "track", Name: "Page Viewed",
			UserID: "user-1234", AnonymousID: "anon-5678", Timestamp: now, ReceivedAt: now,
			Raw: []byte(`{"type":"track","event":"Page Viewed","userId":"user-1234","properties":{"path":"/a/b"}}`),
		}
	}
	chunk := event.AppendEntries(nil, "source-1", evs, nil)
	b.SetBytes(int64(len(chunk)))

	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := cm.Append(context.Background(), chunk); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := cm.Stats()
	b.ReportMetric(float64(b.N*perChunk)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(st.Chunks)/float64(max(st.Records, 1)), "chunks/record")
}

// BenchmarkAppend: one goroutine appending records, one fsync each: 1
// KiB, 64 KiB (what fits the embedded server's read buffer) and 360 KiB
// (a record of 8 requests of 100 events, as the committer makes under
// `tandem bench ingest`). ns/op is the latency of one append; the
// file-… runs write and fsync the same bytes to a file, the floor, so
// the difference is what the JetStream publish adds.
func BenchmarkAppend(b *testing.B) {
	for _, kib := range []int{1, 64, 360} {
		rec := bytes.Repeat([]byte("x"), kib<<10)
		b.Run(fmt.Sprintf("%dKiB", kib), func(b *testing.B) {
			l := openEmbedded(b, jetstream.EmbeddedOptions{Dir: b.TempDir()})
			defer l.Close()
			b.SetBytes(int64(len(rec)))
			for b.Loop() {
				if _, err := l.Append(context.Background(), rec); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("file-%dKiB", kib), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "records"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(int64(len(rec)))
			for b.Loop() {
				if _, err := f.Write(rec); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startServer starts a JetStream server listening on a random loopback
// port (or port, when not 0), storing in dir.
func startServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, SyncAlways: true,
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server did not start")
	}
	return srv
}

// TestContractExternal runs the suite on Open against a server listening
// on loopback, one stream per dir. The server's max_payload is the default
// 1 MiB, so this also covers MaxRecordBytes following it.
func TestContractExternal(t *testing.T) {
	srv := startServer(t, t.TempDir(), 0)
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	logtest.Run(t, func(t *testing.T, dir string) eventlog.Log {
		h := fnv.New64a()
		h.Write([]byte(dir))
		name := fmt.Sprintf("T%x", h.Sum64())
		l, err := jetstream.Open(srv.ClientURL(), jetstream.Options{Stream: name, Subject: "t." + name})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got, want := l.MaxRecordBytes(), 1<<20-4<<10; got != want {
			t.Fatalf("MaxRecordBytes = %d on a server with the default max_payload, want %d", got, want)
		}
		return l
	})
}

// TestExternalOutage: while the server is down Ready and Append fail fast
// with ErrUnavailable; once it is back the log works again, with what was
// appended before.
func TestExternalOutage(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	srv := startServer(t, dir, 0)
	port := srv.Addr().(*net.TCPAddr).Port
	l, err := jetstream.Open(srv.ClientURL(), jetstream.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	seq1, err := l.Append(ctx, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()

	start := time.Now()
	if err := l.Ready(ctx); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Ready with the server down: %v, want ErrUnavailable", err)
	}
	if _, err := l.Append(ctx, []byte("lost")); !errors.Is(err, eventlog.ErrUnavailable) {
		t.Fatalf("Append with the server down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing took %v", d)
	}

	srv = startServer(t, dir, port)
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	defer l.Close()
	deadline := time.Now().Add(15 * time.Second)
	for l.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 15s after the server came back: %v", l.Ready(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	seq2, err := l.Append(ctx, []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 2 || msgs[0].Seq != seq1 || string(msgs[0].Data) != "one" || msgs[1].Seq != seq2 || string(msgs[1].Data) != "two" {
		t.Fatalf("after the outage: %+v, %v", msgs, err)
	}
}

// proxy forwards TCP connections to a server; it can hold back what the
// server sends and cut every connection.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	hold   chan struct{} // while open-ended (not closed), server→client bytes wait
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, hold: closedChan()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					p.mu.Lock()
					hold := p.hold
					p.mu.Unlock()
					<-hold
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return p
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// freeze holds back what the server sends from now on.
func (p *proxy) freeze() {
	p.mu.Lock()
	p.hold = make(chan struct{})
	p.mu.Unlock()
}

// cut closes every connection, dropping what was held back, and lets new
// ones through.
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.mu.Lock()
	select {
	case <-p.hold:
	default:
		close(p.hold)
	}
	p.mu.Unlock()
}

// TestExternalDropDuringAppend: an Append waiting for its acknowledgement
// when the connection drops fails then, not after the timeout.
func TestExternalDropDuringAppend(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), 0)
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	p := newProxy(t, srv.Addr().String())
	l, err := jetstream.Open(p.url(), jetstream.Options{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}

	p.freeze()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := l.Append(ctx, []byte("two"))
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Append returned while its acknowledgement was held back: %v", err)
	default:
	}
	p.cut()
	select {
	case err := <-done:
		if !errors.Is(err, eventlog.ErrUnavailable) {
			t.Fatalf("Append cut off: %v, want ErrUnavailable", err)
		}
		t.Logf("Append failed %v after it started: %v", time.Since(start), err)
	case <-time.After(5 * time.Second):
		t.Fatal("Append still waiting 5s after the connection dropped")
	}

	// The connection comes back and the log works.
	deadline := time.Now().Add(15 * time.Second)
	for l.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 15s after the drop: %v", l.Ready(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := l.Append(ctx, []byte("three")); err != nil {
		t.Fatal(err)
	}
}

// thaw lets through what was held back, and what comes next.
func (p *proxy) thaw() {
	p.mu.Lock()
	select {
	case <-p.hold:
	default:
		close(p.hold)
	}
	p.mu.Unlock()
}

// TestFetchWaitEndsWithServer: a record the server sends in answer to a
// Fetch's waiting pull request reaches the reader even when it arrives
// after the wait the caller gave (a slow network, a loaded machine): the
// wait ends when the server says the request is over, not at a deadline
// of the client's. A client that stopped listening at its own deadline
// lost such a record until the ack wait had passed (30s); it then came
// after later records, out of order.
func TestFetchWaitEndsWithServer(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), 0)
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	p := newProxy(t, srv.Addr().String())
	reader, err := jetstream.Open(p.url(), jetstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	writer, err := jetstream.Open(srv.ClientURL(), jetstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	c, err := reader.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The consumer's pull requests, seen from the server.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jsapi.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Consumer(ctx, jetstream.DefaultStream, "reader")
	if err != nil {
		t.Fatal(err)
	}

	const wait = 2 * time.Second
	type result struct {
		msgs []eventlog.Message
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		msgs, err := c.Fetch(ctx, 10, wait)
		done <- result{msgs, err}
	}()
	for {
		ci, err := info.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumWaiting > 0 {
			break // the Fetch waits on the server
		}
		if time.Since(start) > wait/2 {
			t.Fatal("the Fetch's pull request did not reach the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The server answers with a record; the answer reaches the reader
	// only after the wait it was given.
	p.freeze()
	seq, err := writer.Append(ctx, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(start.Add(wait + 300*time.Millisecond)))
	p.thaw()

	res := <-done
	if res.err != nil {
		t.Fatalf("Fetch: %v", res.err)
	}
	if len(res.msgs) == 0 {
		// Not lost, at least? Only after the ack wait.
		again, _ := c.Fetch(ctx, 10, 2*time.Second)
		t.Fatalf("the record served to the waiting Fetch was not returned (%d records on the next Fetch): it waits for the ack wait and comes after later records", len(again))
	}
	if res.msgs[0].Seq != seq || string(res.msgs[0].Data) != "late" {
		t.Fatalf("Fetch returned seq %d %q, want seq %d \"late\"", res.msgs[0].Seq, res.msgs[0].Data, seq)
	}
}

// TestRelease: a released record comes again at once, to the next Fetch,
// and can then be acknowledged.
func TestRelease(t *testing.T) {
	ctx := t.Context()
	l := openEmbedded(t, jetstream.EmbeddedOptions{Dir: t.TempDir()})
	if _, err := l.Append(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	c, err := l.Consumer(ctx, "reader")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(ctx, 10, time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Fetch: %d records, %v", len(msgs), err)
	}
	if err := c.Release(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	again, err := c.Fetch(ctx, 10, 5*time.Second)
	if err != nil || len(again) != 1 || again[0].Seq != msgs[0].Seq {
		t.Fatalf("Fetch after Release: %v, %v; want record %d again", again, err, msgs[0].Seq)
	}
	if err := c.Ack(ctx, again...); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Pending(ctx); err != nil || n != 0 {
		t.Fatalf("Pending: %d, %v", n, err)
	}
}
