// Package jetstream implements [eventlog.Log] on NATS JetStream, with an
// in-process server ([OpenEmbedded]) or an external server or cluster
// ([Open]).
//
// The log is one file-storage stream (default name "TANDEM_EVENTS", subject
// "tandem.events") with limits retention and discard-new: when MaxBytes is
// reached Append fails with [eventlog.ErrUnavailable] instead of dropping
// records no consumer has read. Records leave the stream only by MaxAge.
// Consumers are durable pull consumers with explicit acks.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/eventlog"
)

// Defaults.
const (
	DefaultStream         = "TANDEM_EVENTS"
	DefaultSubject        = "tandem.events"
	DefaultMaxRecordBytes = 4 << 20
)

const (
	// headerRoom is what a published message may carry on top of its
	// record: the NATS headers the client adds.
	headerRoom = 4 << 10
	// embeddedMaxPayload is the embedded server's max_payload, unless a
	// larger MaxRecordBytes needs more.
	embeddedMaxPayload = 8 << 20
	// ackWait is how long a delivered, unacknowledged record waits before it
	// is delivered again, unless Options.AckWait says otherwise.
	ackWait = 30 * time.Second
	// openTimeout bounds Open's creation of the stream and Consumer's of a
	// consumer, retries included: a cluster that has just started may
	// need seconds to elect its leaders.
	openTimeout = 30 * time.Second
	// maxAckPending bounds the records a consumer has delivered but not yet
	// seen acknowledged.
	maxAckPending = 10000
	// fetchBudget bounds the bytes one Fetch may ask for, counting every
	// record at the log's MaxRecordBytes; NATS's outbound buffer per
	// connection is 64 MiB.
	fetchBudget = 32 << 20
	// defaultTimeout bounds requests to the server whose context has no
	// deadline.
	defaultTimeout = 5 * time.Second
	// closeTimeout bounds the release of unacknowledged records by Close.
	closeTimeout = 2 * time.Second
	// ackSettle is how long an embedded log's Close waits after the last
	// ack before it stops the server, when it cannot watch the consumer
	// state files (see settle.go).
	ackSettle = time.Second
	// errCodeMessageTooLarge is JetStream's "message size exceeds maximum
	// allowed" error code.
	errCodeMessageTooLarge jsapi.ErrorCode = 10054
	// errCodeNoPeers is JetStream's "no suitable peers for placement": a
	// replicated stream asked for more servers than are known to be up,
	// as happens while a cluster starts.
	errCodeNoPeers jsapi.ErrorCode = 10005
)

// EmbeddedOptions configure [OpenEmbedded].
type EmbeddedOptions struct {
	// Dir is the JetStream storage directory. Required. OpenEmbedded locks
	// it: a second log on the same Dir fails to open until the first is
	// closed.
	Dir string
	// MaxBytes caps the stream's size; when it is reached Append fails with
	// ErrUnavailable. Zero means unlimited.
	MaxBytes int64
	// MaxAge is how long records are kept. Zero means forever.
	MaxAge time.Duration
	// MaxRecordBytes is the largest record Append takes. Zero means
	// DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Stream and Subject name the stream; empty means DefaultStream and
	// DefaultSubject.
	Stream  string
	Subject string
	// Logger receives the server's log. Nil means no logging.
	Logger *slog.Logger
}

// Options configure [Open].
type Options struct {
	// Replicas is the stream's replication factor. Zero means 1. Open
	// raises an existing stream's replication to Replicas but never lowers
	// it, so that a node configured with fewer replicas cannot make a
	// stream that others share less durable.
	Replicas int
	// MaxBytes, MaxAge, MaxRecordBytes, Stream and Subject are as in
	// [EmbeddedOptions]. MaxRecordBytes zero means DefaultMaxRecordBytes,
	// lowered to fit the server's max_payload; set max_payload to 8MB on
	// the servers to keep the default.
	MaxBytes       int64
	MaxAge         time.Duration
	MaxRecordBytes int
	Stream         string
	Subject        string
	// Timeout bounds each request to the servers (an Append, an ack, a
	// stream info) whose context has no earlier deadline; a request under
	// way when the connection drops fails at once. Zero means 5s.
	Timeout time.Duration
	// AckWait is how long a record fetched and not acknowledged waits
	// before the server delivers it again, to any reader of the same
	// consumer: how long the records held by a tandem node that died wait
	// for another node to take them over. A live reader's records are
	// marked in progress every third of it, for up to ten ack waits, so a
	// reader slower than the ack wait does not get them twice. Every node sharing a consumer should use the same
	// value: the last to open the consumer sets it. Zero means 30s.
	AckWait time.Duration
	// Name is the connection's name as the servers show it. Empty means
	// "tandem".
	Name string
	// NATSOptions are added to the connection's options (credentials, TLS,
	// timeouts...). They must not replace the disconnect and reconnect
	// handlers, which Open sets.
	NATSOptions []nats.Option
	// Logger receives connection events (disconnects, reconnects). Nil
	// means no logging.
	Logger *slog.Logger
}

// Log is an [eventlog.Log] on a JetStream stream.
type Log struct {
	nc        *nats.Conn
	js        jsapi.JetStream
	stream    jsapi.Stream
	srv       *server.Server // nil unless embedded
	lock      *os.File       // the embedded store's lock
	name      string
	subject   string
	maxRecord int
	timeout   time.Duration
	ackWait   time.Duration
	pubOpts   []jsapi.PublishOpt

	// mu is held shared by Append and exclusively by Close, so that Close
	// waits for Appends under way before it closes the connection.
	mu       sync.RWMutex
	closed   atomic.Bool
	lastAck  atomic.Int64 // unix nanoseconds of the last ack or release sent
	cmu      sync.Mutex
	consumer map[*consumer]struct{}
	names    map[string]struct{} // of every consumer opened

	// conn is canceled when the connection drops and replaced when it is
	// back, so that requests under way fail then instead of after their
	// timeout. Nil for an embedded log.
	connMu sync.Mutex
	conn   context.Context
	down   context.CancelCauseFunc
}

var _ eventlog.Log = (*Log)(nil)

type streamOptions struct {
	name, subject string
	maxBytes      int64
	maxAge        time.Duration
	maxRecord     int
	replicas      int
	ackWait       time.Duration
}

// OpenEmbedded starts a JetStream server inside this process, storing in
// opts.Dir, and opens the log on it. The server syncs every stored message
// to disk before acknowledging it, so a record whose Append returned nil
// survives a crash of the process or the machine. The server does not
// listen on any port.
func OpenEmbedded(opts EmbeddedOptions) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("eventlog/jetstream: EmbeddedOptions.Dir is required")
	}
	so := streamOptions{
		name: opts.Stream, subject: opts.Subject,
		maxBytes: opts.MaxBytes, maxAge: opts.MaxAge, maxRecord: opts.MaxRecordBytes,
		replicas: 1,
	}
	if err := so.fill(); err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	l, err := startEmbedded(opts, so)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	l.lock = lock
	return l, nil
}

func startEmbedded(opts EmbeddedOptions, so streamOptions) (*Log, error) {
	sopts := &server.Options{
		ServerName: "tandem-embedded",
		DontListen: true,
		JetStream:  true,
		StoreDir:   opts.Dir,
		SyncAlways: true,
		MaxPayload: int32(max(embeddedMaxPayload, so.maxRecord+headerRoom)),
		NoLog:      opts.Logger == nil,
		NoSigs:     true,
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: embedded server: %w", err)
	}
	if opts.Logger != nil {
		srv.SetLogger(serverLogger{opts.Logger}, opts.Logger.Enabled(context.Background(), slog.LevelDebug), false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("eventlog/jetstream: embedded server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("tandem"), nats.ReconnectBufSize(-1))
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("eventlog/jetstream: connect to embedded server: %w", err)
	}
	l, err := open(nc, so, 0)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, err
	}
	l.srv = srv
	return l, nil
}

// Open connects to the NATS server or cluster at url (nats://host:port,
// several separated by commas) and opens the log there, creating the stream
// or updating its configuration. For the durability Append promises, the
// servers must sync every write (jetstream { sync_interval: always }); with
// Replicas 3 an acknowledged record is moreover on a quorum of servers.
//
// The connection reconnects forever; while it is down Append and Fetch fail
// fast with ErrUnavailable.
func Open(url string, opts Options) (*Log, error) {
	so := streamOptions{
		name: opts.Stream, subject: opts.Subject,
		maxBytes: opts.MaxBytes, maxAge: opts.MaxAge, maxRecord: opts.MaxRecordBytes,
		replicas: opts.Replicas, ackWait: opts.AckWait,
	}
	if so.replicas == 0 {
		so.replicas = 1
	}
	explicitMax := so.maxRecord != 0
	if err := so.fill(); err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "tandem"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The handlers wait for ready, closed once l is set or Open failed.
	var l *Log
	ready := make(chan struct{})
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Fail publishes while disconnected rather than buffer them: the
		// caller answers 503 and the client retries.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			<-ready
			logger.Warn("event log disconnected from NATS", "err", fmt.Sprint(err))
			if l != nil {
				l.connDown(err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			<-ready
			logger.Info("event log reconnected to NATS", "server", nc.ConnectedUrlRedacted())
			if l != nil {
				l.connUp()
			}
		}),
	}
	nopts = append(nopts, opts.NATSOptions...)
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		close(ready)
		return nil, fmt.Errorf("%w: connect to %s: %w", eventlog.ErrUnavailable, redactURLs(url), err)
	}
	if room := int(nc.MaxPayload()) - headerRoom; so.maxRecord > room {
		if explicitMax {
			close(ready)
			nc.Close()
			return nil, fmt.Errorf("eventlog/jetstream: MaxRecordBytes %d does not fit the server's max_payload %d", so.maxRecord, nc.MaxPayload())
		}
		so.maxRecord = room
	}
	l, err = open(nc, so, opts.Timeout)
	if err != nil {
		close(ready)
		nc.Close()
		return nil, err
	}
	l.connUp()
	close(ready)
	return l, nil
}

func (so *streamOptions) fill() error {
	if so.name == "" {
		so.name = DefaultStream
	}
	if so.subject == "" {
		so.subject = DefaultSubject
	}
	if so.maxRecord == 0 {
		so.maxRecord = DefaultMaxRecordBytes
	}
	if so.ackWait == 0 {
		so.ackWait = ackWait
	}
	switch {
	case so.maxRecord < 0 || so.maxRecord > 64<<20-headerRoom:
		return fmt.Errorf("eventlog/jetstream: MaxRecordBytes %d out of range", so.maxRecord)
	case so.maxBytes < 0:
		return fmt.Errorf("eventlog/jetstream: negative MaxBytes %d", so.maxBytes)
	case so.maxAge < 0:
		return fmt.Errorf("eventlog/jetstream: negative MaxAge %v", so.maxAge)
	case so.replicas < 1 || so.replicas > 5:
		return fmt.Errorf("eventlog/jetstream: Replicas %d out of range 1..5", so.replicas)
	case so.ackWait < time.Second:
		return fmt.Errorf("eventlog/jetstream: AckWait %v is under a second", so.ackWait)
	}
	return nil
}

func open(nc *nats.Conn, so streamOptions, timeout time.Duration) (*Log, error) {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	js, err := jsapi.New(nc, jsapi.WithDefaultTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	maxBytes := so.maxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	cfg := jsapi.StreamConfig{
		Name:        so.name,
		Description: "tandem event log",
		Subjects:    []string{so.subject},
		Retention:   jsapi.LimitsPolicy,
		Discard:     jsapi.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    maxBytes,
		MaxAge:      so.maxAge,
		MaxMsgSize:  int32(so.maxRecord + headerRoom),
		Storage:     jsapi.FileStorage,
		Replicas:    so.replicas,
		// The default: the server stores (and with sync always, syncs)
		// before it acknowledges.
		PersistMode: jsapi.DefaultPersistMode,
	}
	var stream jsapi.Stream
	err = retry(context.Background(), timeout, func(ctx context.Context) (err error) {
		defer func() {
			// Nodes opening the log at once on a cluster: another node's
			// create may be under way, so its stream can be "not found"
			// to an update or an info between being named and being
			// placed. The stream is being created: try again.
			if errors.Is(err, jsapi.ErrStreamNotFound) {
				stream, err = nil, fmt.Errorf("%w: %w", errNoLeader, err)
			}
		}()
		if stream == nil {
			c := cfg
			cur, err := js.Stream(ctx, cfg.Name)
			switch {
			case err == nil:
				c.Replicas = max(c.Replicas, cur.CachedInfo().Config.Replicas)
			case !errors.Is(err, jsapi.ErrStreamNotFound):
				return err
			}
			if stream, err = js.CreateOrUpdateStream(ctx, c); err != nil {
				return err
			}
			if hasLeader(stream.CachedInfo().Cluster) {
				return nil
			}
		}
		// Created, but its leader is still being elected: until then
		// every Append would fail.
		info, err := stream.Info(ctx)
		if err == nil && !hasLeader(info.Cluster) {
			err = errNoLeader
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: create stream %s: %w", eventlog.ErrUnavailable, so.name, err)
	}
	return &Log{
		nc:        nc,
		js:        js,
		stream:    stream,
		name:      so.name,
		subject:   so.subject,
		maxRecord: so.maxRecord,
		timeout:   timeout,
		ackWait:   so.ackWait,
		pubOpts:   []jsapi.PublishOpt{jsapi.WithExpectStream(so.name)},
		consumer:  make(map[*consumer]struct{}),
		names:     make(map[string]struct{}),
	}, nil
}

// MaxRecordBytes is the largest record Append takes.
func (l *Log) MaxRecordBytes() int { return l.maxRecord }

// Append publishes rec to the stream and waits for the server's
// acknowledgement, which the server sends only once rec is stored (and, on
// the embedded server, synced). It returns the record's stream sequence.
// A record over MaxRecordBytes gets [eventlog.ErrTooLarge], without a
// request. Failures that may pass wrap [eventlog.ErrUnavailable]: storage
// full, timeout, no server, connection lost; the record was not stored, or
// (after a timeout or a lost connection) may have been.
func (l *Log) Append(ctx context.Context, rec []byte) (uint64, error) {
	if len(rec) > l.maxRecord {
		return 0, fmt.Errorf("%w: %d bytes, the log takes at most %d", eventlog.ErrTooLarge, len(rec), l.maxRecord)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed.Load() {
		return 0, eventlog.ErrClosed
	}
	if l.srv == nil {
		// A server that lost its stream's leader holds a publish until a
		// new one is elected, which takes seconds: fail after Timeout
		// (unless ctx ends sooner), so that collection answers 503 and
		// clients retry, rather than holding their requests.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	cctx, stop := l.withConn(ctx)
	defer stop()
	ack, err := l.js.Publish(cctx, l.subject, rec, l.pubOpts...)
	if err != nil {
		return 0, l.mapErr("append", cause(ctx, cctx, err))
	}
	return ack.Sequence, nil
}

// mapErr turns a NATS error into one of eventlog's. Everything that may
// pass (storage full, no server, timeouts, a lost connection: JetStream API
// errors with a 5xx code and all errors that are not JetStream's) wraps
// ErrUnavailable; JetStream's 4xx errors (a bad request, a conflicting
// configuration) do not.
func (l *Log) mapErr(op string, err error) error {
	var apiErr *jsapi.APIError
	isAPI := errors.As(err, &apiErr)
	switch {
	case isAPI && apiErr.ErrorCode == errCodeMessageTooLarge,
		errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: %s: %w", eventlog.ErrTooLarge, op, err)
	case l.closed.Load():
		return eventlog.ErrClosed
	case isAPI && apiErr.Code >= 400 && apiErr.Code < 500:
		return fmt.Errorf("eventlog/jetstream: %s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", eventlog.ErrUnavailable, op, err)
}

// Consumer opens the named durable pull consumer, creating it at the start
// of the stream if it does not exist. Names may not contain '.', '*', '>'
// or white space.
func (l *Log) Consumer(ctx context.Context, name string) (eventlog.Consumer, error) {
	if l.closed.Load() {
		return nil, eventlog.ErrClosed
	}
	if name == "" {
		return nil, errors.New("eventlog/jetstream: empty consumer name")
	}
	cfg := jsapi.ConsumerConfig{
		Name:          name,
		Durable:       name,
		Description:   "tandem event log consumer",
		DeliverPolicy: jsapi.DeliverAllPolicy,
		AckPolicy:     jsapi.AckExplicitPolicy,
		AckWait:       l.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
	}
	if err := l.releaseOrphans(ctx, name, &cfg); err != nil {
		return nil, err
	}
	var jc jsapi.Consumer
	err := retry(ctx, l.timeout, func(ctx context.Context) (err error) {
		if jc == nil {
			if jc, err = l.js.CreateOrUpdateConsumer(ctx, l.name, cfg); err != nil {
				return err
			}
			if hasLeader(jc.CachedInfo().Cluster) {
				return nil
			}
		}
		// Until its leader is elected the consumer delivers nothing.
		info, err := jc.Info(ctx)
		if err == nil && !hasLeader(info.Cluster) {
			err = errNoLeader
		}
		return err
	})
	if err != nil {
		if errors.Is(err, jsapi.ErrInvalidConsumerName) {
			return nil, fmt.Errorf("eventlog/jetstream: consumer %q: %w", name, err)
		}
		return nil, l.mapErr("consumer "+name, err)
	}
	c := &consumer{log: l, jc: jc, name: name, held: make(map[uint64]heldRecord), stop: make(chan struct{})}
	l.cmu.Lock()
	defer l.cmu.Unlock()
	if l.closed.Load() {
		return nil, eventlog.ErrClosed
	}
	l.consumer[c] = struct{}{}
	l.names[name] = struct{}{}
	go c.heartbeat(l.ackWait)
	return c, nil
}

// releaseOrphans makes records that a dead process had fetched but not
// acknowledged deliverable at once, instead of after AckWait. It only
// applies to an embedded log the first time this process opens the
// consumer: then nobody else can be holding its records. The consumer is
// recreated to start after its ack floor; records acknowledged above the
// floor may come again, which readers tolerate (delivery is at least once).
func (l *Log) releaseOrphans(ctx context.Context, name string, cfg *jsapi.ConsumerConfig) error {
	var info *jsapi.ConsumerInfo
	err := retry(ctx, l.timeout, func(ctx context.Context) error {
		c, err := l.js.Consumer(ctx, l.name, name)
		if err == nil {
			info = c.CachedInfo()
		}
		return err
	})
	if errors.Is(err, jsapi.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return l.mapErr("consumer "+name, err)
	}
	// Where a consumer starts cannot be updated: keep what it has.
	cfg.DeliverPolicy = info.Config.DeliverPolicy
	cfg.OptStartSeq = info.Config.OptStartSeq
	cfg.OptStartTime = info.Config.OptStartTime
	l.cmu.Lock()
	_, seen := l.names[name]
	l.cmu.Unlock()
	if l.srv == nil || seen || info.NumAckPending == 0 {
		return nil
	}
	if err := l.js.DeleteConsumer(ctx, l.name, name); err != nil {
		return l.mapErr("consumer "+name, err)
	}
	cfg.DeliverPolicy = jsapi.DeliverByStartSequencePolicy
	cfg.OptStartSeq = info.AckFloor.Stream + 1
	cfg.OptStartTime = nil
	return nil
}

// retry calls op until it succeeds, fails in a way a retry cannot mend, or
// openTimeout has passed (or ctx ended). Each call gets a context bounded by
// a second, then twice as long each time up to timeout, so that a request
// nobody answers does not use up the whole time: a cluster's meta leader
// leaves some of several concurrent creations of one stream unanswered.
//
// Worth a retry: whatever may pass while a cluster starts or elects leaders
// (JetStream's 5xx errors, "no suitable peers", no responders, timeouts, a
// lost connection, no leader yet), and "stream name already in use", which
// a concurrent Open of the same stream with another configuration causes:
// the retry then updates that stream.
func retry(ctx context.Context, timeout time.Duration, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	attempt := min(time.Second, timeout)
	for {
		octx, ocancel := context.WithTimeout(ctx, attempt)
		err := op(octx)
		ocancel()
		attempt = min(2*attempt, timeout)
		if err == nil {
			return nil
		}
		if !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// errNoLeader is retried: a stream or consumer just created elects its
// leader within moments.
var errNoLeader = errors.New("no leader elected yet")

// hasLeader reports whether a stream or consumer has a leader; one that is
// not replicated (no cluster, or a single server) always has.
func hasLeader(cl *jsapi.ClusterInfo) bool {
	return cl == nil || cl.Leader != ""
}

func transient(err error) bool {
	if errors.Is(err, errNoLeader) {
		return true
	}
	var apiErr *jsapi.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code >= 500 || apiErr.ErrorCode == jsapi.JSErrCodeStreamNameInUse || apiErr.ErrorCode == errCodeNoPeers
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// ConsumerFrom is [Log.Consumer] for a consumer that, when it does not
// exist yet, starts at the first record stored at or after start instead
// of at the start of the stream (a destination approved now has no use for
// a week of older records). An existing consumer keeps its position.
func (l *Log) ConsumerFrom(ctx context.Context, name string, start time.Time) (eventlog.Consumer, error) {
	if l.closed.Load() {
		return nil, eventlog.ErrClosed
	}
	if name != "" && !start.IsZero() {
		start = start.UTC()
		cfg := jsapi.ConsumerConfig{
			Name:          name,
			Durable:       name,
			Description:   "tandem event log consumer",
			DeliverPolicy: jsapi.DeliverByStartTimePolicy,
			OptStartTime:  &start,
			AckPolicy:     jsapi.AckExplicitPolicy,
			AckWait:       l.ackWait,
			MaxDeliver:    -1,
			MaxAckPending: maxAckPending,
		}
		err := retry(ctx, l.timeout, func(ctx context.Context) error {
			_, err := l.js.CreateConsumer(ctx, l.name, cfg)
			return err
		})
		if err != nil && !errors.Is(err, jsapi.ErrConsumerExists) {
			if errors.Is(err, jsapi.ErrInvalidConsumerName) {
				return nil, fmt.Errorf("eventlog/jetstream: consumer %q: %w", name, err)
			}
			return nil, l.mapErr("consumer "+name, err)
		}
	}
	return l.Consumer(ctx, name)
}

// DeleteConsumer removes the named durable consumer and its position (a
// consumer nobody will read again, such as a deleted destination's). A
// consumer that does not exist is not an error.
func (l *Log) DeleteConsumer(ctx context.Context, name string) error {
	if l.closed.Load() {
		return eventlog.ErrClosed
	}
	cctx, stop := l.withConn(ctx)
	defer stop()
	if _, ok := cctx.Deadline(); !ok {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(cctx, l.timeout)
		defer cancel()
	}
	err := l.js.DeleteConsumer(cctx, l.name, name)
	if err != nil && !errors.Is(err, jsapi.ErrConsumerNotFound) {
		return l.mapErr("delete consumer "+name, cause(ctx, cctx, err))
	}
	return nil
}

// Stats describe the stream.
type Stats struct {
	Msgs      uint64 // records stored
	Bytes     uint64 // bytes stored, with JetStream's per-record overhead
	FirstSeq  uint64
	LastSeq   uint64
	Consumers int
	MaxBytes  int64         // the stream's limit; -1 means none
	MaxAge    time.Duration // how long records are kept; 0 means for ever
	Replicas  int
}

// Stats reads the stream's state from the server.
func (l *Log) Stats(ctx context.Context) (Stats, error) {
	if l.closed.Load() {
		return Stats{}, eventlog.ErrClosed
	}
	cctx, stop := l.withConn(ctx)
	defer stop()
	info, err := l.stream.Info(cctx)
	if err != nil {
		return Stats{}, l.mapErr("stream info", cause(ctx, cctx, err))
	}
	return Stats{
		Msgs:      info.State.Msgs,
		Bytes:     info.State.Bytes,
		FirstSeq:  info.State.FirstSeq,
		LastSeq:   info.State.LastSeq,
		Consumers: info.State.Consumers,
		MaxBytes:  info.Config.MaxBytes,
		MaxAge:    info.Config.MaxAge,
		Replicas:  info.Config.Replicas,
	}, nil
}

// SetMaxAge changes how long the stream keeps records (0: for ever):
// records older than d leave it at once. A node sharing an external
// stream changes it for every node.
func (l *Log) SetMaxAge(ctx context.Context, d time.Duration) error {
	if l.closed.Load() {
		return eventlog.ErrClosed
	}
	if d < 0 {
		return fmt.Errorf("eventlog/jetstream: negative MaxAge %v", d)
	}
	cctx, stop := l.withConn(ctx)
	defer stop()
	info, err := l.stream.Info(cctx)
	if err != nil {
		return l.mapErr("stream info", cause(ctx, cctx, err))
	}
	if info.Config.MaxAge == d {
		return nil
	}
	cfg := info.Config
	cfg.MaxAge = d
	if _, err := l.js.UpdateStream(cctx, cfg); err != nil {
		return l.mapErr("update stream", cause(ctx, cctx, err))
	}
	return nil
}

// Ready returns nil when the connection is up, the stream answers, and it
// has room for a record of MaxRecordBytes (or a tenth of MaxBytes, if that
// is less); otherwise an error wrapping [eventlog.ErrUnavailable].
func (l *Log) Ready(ctx context.Context) error {
	if l.closed.Load() {
		return eventlog.ErrClosed
	}
	if !l.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS (%v)", eventlog.ErrUnavailable, l.nc.Status())
	}
	cctx, stop := l.withConn(ctx)
	defer stop()
	info, err := l.stream.Info(cctx)
	if err != nil {
		return l.mapErr("stream info", cause(ctx, cctx, err))
	}
	if err := quorum(info); err != nil {
		return err
	}
	if limit := info.Config.MaxBytes; limit > 0 {
		reserve := min(int64(l.maxRecord+headerRoom), limit/10)
		if int64(info.State.Bytes)+reserve > limit {
			return fmt.Errorf("%w: storage full: %d of %d bytes used", eventlog.ErrUnavailable, info.State.Bytes, limit)
		}
	}
	return nil
}

// peerSilence is how long a replica may go unheard of by the stream's
// leader and still count towards its quorum.
const peerSilence = 5 * time.Second

// quorum returns an error wrapping ErrUnavailable when a replicated stream
// has no leader, or its leader has not heard lately from enough replicas
// to store a record: Appends would then time out, so the log is not ready.
func quorum(info *jsapi.StreamInfo) error {
	cl := info.Cluster
	if cl == nil || info.Config.Replicas <= 1 {
		return nil
	}
	if cl.Leader == "" {
		return fmt.Errorf("%w: stream %s has no leader", eventlog.ErrUnavailable, info.Config.Name)
	}
	live := 1 // the leader
	var gone []string
	for _, p := range cl.Replicas {
		if p == nil {
			continue
		}
		if !p.Offline && p.Active < peerSilence {
			live++
		} else {
			gone = append(gone, fmt.Sprintf("%s (last seen %s ago)", p.Name, p.Active.Round(time.Second)))
		}
	}
	if need := info.Config.Replicas/2 + 1; live < need {
		return fmt.Errorf("%w: stream %s has %d of the %d replicas a write needs; unreachable: %s",
			eventlog.ErrUnavailable, info.Config.Name, live, need, strings.Join(gone, ", "))
	}
	return nil
}

// Close waits for Appends under way, releases the records its consumers
// hold unacknowledged, closes the connection and, for an embedded log, shuts
// the server down. It may be called more than once.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil
	}
	l.closed.Store(true)
	l.mu.Unlock()

	l.cmu.Lock()
	cs := make([]*consumer, 0, len(l.consumer))
	for c := range l.consumer {
		cs = append(cs, c)
	}
	clear(l.consumer)
	l.cmu.Unlock()
	var err error
	released := make(map[string][]uint64)
	releasedAt := time.Now()
	if len(cs) > 0 && l.nc.IsConnected() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		for _, c := range cs {
			seqs, rerr := c.release(ctx)
			released[c.name] = append(released[c.name], seqs...)
			if rerr != nil && err == nil {
				err = rerr
			}
		}
		cancel()
	}
	if l.srv != nil && l.nc.IsConnected() {
		l.settle(released, releasedAt)
	}
	// Every request made on the connection has had its answer or given
	// up: nothing is left to flush.
	l.nc.Close()
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
	if l.lock != nil {
		l.lock.Close()
	}
	return err
}

func (l *Log) forget(c *consumer) {
	l.cmu.Lock()
	delete(l.consumer, c)
	l.cmu.Unlock()
}

// errConnectionLost is the cause of requests failed by a disconnect.
var errConnectionLost = errors.New("connection to NATS lost")

func (l *Log) connDown(err error) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.down != nil {
		l.down(fmt.Errorf("%w: %v", errConnectionLost, err))
	}
}

func (l *Log) connUp() {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.down != nil {
		l.down(nil)
	}
	l.conn, l.down = context.WithCancelCause(context.Background())
}

// withConn returns ctx, also canceled if the connection drops before stop
// is called.
func (l *Log) withConn(ctx context.Context) (_ context.Context, stop func()) {
	l.connMu.Lock()
	conn := l.conn
	l.connMu.Unlock()
	if conn == nil || conn.Err() != nil {
		// Embedded, or down already: requests fail fast on their own.
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	unregister := context.AfterFunc(conn, func() { cancel(context.Cause(conn)) })
	return ctx, func() {
		unregister()
		cancel(nil)
	}
}

// cause returns what ended ctx, a context made by withConn, if its parent
// did not end: the lost connection.
func cause(parent, ctx context.Context, err error) error {
	if err != nil && parent.Err() == nil && ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil && c != ctx.Err() {
			return c
		}
	}
	return err
}

// serverLogger adapts a slog.Logger to the server's Logger.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
