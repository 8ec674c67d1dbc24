package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/access"
	"tandem/analytics"
	"tandem/api"
	"tandem/apierror"
	"tandem/attribution"
	"tandem/audience"
	"tandem/audit"
	"tandem/collect"
	"tandem/config"
	"tandem/delivery"
	"tandem/event"
	"tandem/eventlog"
	"tandem/eventlog/jetstream"
	"tandem/eventstore"
	"tandem/eventstore/clickhouse"
	"tandem/eventstore/duckdb"
	"tandem/experiment"
	"tandem/experiment/assign"
	"tandem/governance"
	"tandem/identity"
	"tandem/imports"
	"tandem/metrics"
	"tandem/pipeline"
	"tandem/policy"
	"tandem/privacy"
	"tandem/quarantine"
	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/statestore/sqlite"
	"tandem/trackingplan"
	"tandem/version"
	"tandem/web"
)

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish (their events are fsync'd
// before they are answered), finishes the pipeline's current batch and
// closes the stores. A nil error means a clean stop.
//
// Once listening it prints to banner (if not nil) how to send a first event.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger, banner io.Writer) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s, err := Open(ctx, cfg, logger)
	if err != nil {
		ln.Close()
		return err
	}
	if banner != nil {
		printBanner(banner, cfg, ln.Addr().String())
	}
	return s.Serve(ctx, ln)
}

// printBanner tells a person how to send and read a first event. It names
// the files that hold the secrets, never the secrets.
func printBanner(w io.Writer, cfg config.Config, addr string) {
	base := "http://" + addr
	token := "$(cat " + filepath.Join(cfg.DataDir, "admin.token") + ")"
	if os.Getenv("TANDEM_ADMIN_TOKEN") != "" {
		token = "$TANDEM_ADMIN_TOKEN"
	}
	fmt.Fprintf(w, `tandem %s is running on %s (data in %s)

Send a first event:
  curl -u "$(cat %s):" -H 'Content-Type: application/json' \
    -d '{"userId":"user-1","event":"Signed Up","properties":{"plan":"pro"}}' %s/v1/track

Read it back:
  curl -H "Authorization: Bearer %s" %s/api/v1/events

Stop with Ctrl-C (nothing accepted is lost).
`, version.Version, base, cfg.DataDir, filepath.Join(cfg.DataDir, "default.writekey"), base, token, base)
}

// Server is a running tandem node.
type Server struct {
	cfg    config.Config
	logger *slog.Logger

	Log        eventlog.Log
	Committer  *eventlog.Committer
	Events     eventstore.Store
	State      *statestore.DB
	Access     *access.Store
	Governance *governance.Store
	Quarantine *quarantine.Store
	Plans      *trackingplan.Store
	Imports    *imports.Service
	Identity   *identity.Store
	Consent    *privacy.Store // the route to a destination asks it (Allowed)
	// Suppressions lists the keyed hashes of erased people's identifiers:
	// the pipeline drops their later events, delivery does not send them.
	Suppressions *privacy.Suppressions
	Traits       *audience.Store // computed traits, kept by the pipeline
	Audiences    *audience.Audiences
	Audit        *audit.Log
	Changes      *policy.Store // change requests under the decision rights
	Pipeline     *pipeline.Pipeline
	Delivery     *delivery.Manager // runs (Serve) only where the pipeline does
	// Retention removes expired data from every store, on a schedule
	// where the pipeline runs; Classifier tags fields with data
	// categories (masking, the records of processing).
	Retention  *privacy.Retainer
	Classifier *privacy.Classifier
	Metrics    *metrics.Registry
	// Lag measures the pipeline's backlog in the log (see backpressure.go).
	Lag *pipeline.Monitor
	// burst is the pipeline's collection-first rule (burst.go); nil
	// without a pipeline.
	burst *pipeline.CollectionFirst

	// jsLog is the event log itself, under any test wrapper: erasures
	// rewrite its records.
	jsLog *jetstream.Log

	handler        http.Handler
	api            *api.API
	trustedProxies []netip.Prefix
	inflight       *collect.InflightLimit
	lock           *os.File // the data directory's lock, held while open
	// runPipeline runs the pipeline until its context ends (s.Pipeline.Run;
	// tests replace it).
	runPipeline func(context.Context) error
	hooks       hooks
	// stopPacer ends the garbage collector's pacing around the embedded
	// event store's dedup filter (duckdb.PaceGC); nil without it.
	stopPacer func()
	// stopEventsLimit ends the updates of the embedded event store's
	// memory limit as its dedup filter grows (eventsmem.go); nil without.
	stopEventsLimit func()
	// lastAppendFailure is when the last log append failed (Unix ns), 0
	// after a success: a log that just refused a write is not ready even
	// if its own health check passes (e.g. full for records of this size).
	lastAppendFailure atomic.Int64
}

// Open opens every backend and prepares the handlers, without serving. It
// first locks the data directory: a second node on the same directory, in
// this process or another, gets an error naming it.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Server, error) {
	return open(ctx, cfg, logger, hooks{})
}

// hooks let tests put themselves between the server and its backends.
type hooks struct {
	// wrapLog, when set, wraps the event log the server opened; the
	// server then writes and reads through the wrapper.
	wrapLog func(eventlog.Log) eventlog.Log
	// runPipeline, when set, runs instead of the pipeline's Run.
	runPipeline func(context.Context) error
	// beforeClose, when set, is called as the backends start closing.
	beforeClose func()
	// collectionFirstMaxAge, when set, replaces collectionFirstMaxAge
	// (burst.go).
	collectionFirstMaxAge time.Duration
}

func open(ctx context.Context, cfg config.Config, logger *slog.Logger, h hooks) (_ *Server, err error) {
	s := &Server{cfg: cfg, logger: logger, Metrics: metrics.NewRegistry(), hooks: h}
	defer func() {
		if err != nil {
			if cerr := s.close(); cerr != nil {
				logger.Warn("closing after a failed start", "err", cerr.Error())
			}
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.trustedProxies, err = collect.ParseTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, &config.UsageError{Key: "trusted_proxies", Message: err.Error()}
	}
	if err := s.openLog(h); err != nil {
		return nil, err
	}
	if s.State, err = openState(ctx, cfg); err != nil {
		return nil, err
	}
	var migs []statestore.Migration
	migs = append(migs, access.Migrations()...)
	migs = append(migs, governance.Migrations()...)
	migs = append(migs, quarantine.Migrations()...)
	migs = append(migs, imports.Migrations()...)
	migs = append(migs, identity.Migrations()...)
	migs = append(migs, audit.Migrations()...)
	migs = append(migs, experiment.Migrations()...)
	migs = append(migs, governance.DestinationMigrations()...)
	migs = append(migs, delivery.Migrations()...)
	migs = append(migs, privacy.Migrations()...)
	migs = append(migs, trackingplan.Migrations()...)
	migs = append(migs, audience.Migrations()...)
	migs = append(migs, policy.Migrations()...)
	if err := s.State.Migrate(ctx, migs...); err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	s.Access = access.NewStore(s.State)
	s.Governance = governance.NewStore(s.State)
	s.Quarantine = quarantine.NewStore(s.State)
	s.Plans = trackingplan.NewStore(s.State)
	s.Audit = audit.New(s.State)
	rules, err := policy.New(cfg.Policy)
	if err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			return nil, &config.UsageError{Key: ve.Key, Message: ve.Message}
		}
		return nil, err
	}
	s.Changes = policy.NewStore(s.State, rules, s.Audit)
	s.Imports = imports.NewService(imports.Options{DB: s.State, Log: s.Committer, Quarantine: s.Quarantine,
		Sources: s.Governance, Logger: logger, ChunkBytes: min(1<<20, s.Log.MaxRecordBytes()/2)})
	if err := s.openEvents(ctx); err != nil {
		return nil, err
	}
	if s.Identity, err = identity.NewStore(ctx, s.State, identity.Options{Rules: cfg.Identity, Links: s.Events}); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	s.Consent = privacy.NewStore(s.State, cfg.Consent, s.Identity)
	key, err := s.Access.Secret(ctx, privacy.SuppressionSecret)
	if err != nil {
		return nil, fmt.Errorf("privacy: %w", err)
	}
	s.Suppressions = privacy.NewSuppressions(s.State, key, s.Identity)
	if err := s.Suppressions.Load(ctx); err != nil {
		return nil, err
	}
	s.Traits = audience.NewStore(s.State, s.Identity, s.Events).WithStages(api.AudienceStages(cfg.Journey.Stages))
	s.Audiences = audience.NewAudiences(s.State, s.Traits, s.Identity, s.Committer, logger)
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	s.instrument()
	s.Lag = pipeline.NewMonitor(s.Log, "", s.Metrics)
	if cfg.Pipeline {
		opts := s.pipelineOptions(s.Metrics)
		s.burst = s.collectionFirst()
		opts.Defer = s.burst.Defer
		s.Pipeline, err = pipeline.New(ctx, opts)
		if err != nil {
			return nil, err
		}
		s.runPipeline = s.Pipeline.Run
		if h.runPipeline != nil {
			s.runPipeline = h.runPipeline
		}
	}
	// Every node checks destination configs; only pipeline nodes deliver.
	if s.Delivery, err = delivery.New(delivery.Options{Log: s.Log, Governance: s.Governance, DB: s.State,
		Allow: cfg.DestinationAllow, Metrics: s.Metrics, Logger: logger, Consent: s.Consent, Suppress: s.Suppressions}); err != nil {
		return nil, err
	}
	s.Governance.SetDestinationTypes(s.Delivery.Types())
	s.Classifier = privacy.NewClassifier(cfg.Privacy, s.Plans)
	// Retention deletes through each store's own delete path, then
	// compacts like an erasure so that the expired rows' bytes leave the
	// files: the DuckDB file's copy (ClickHouse's Expire waits for the
	// old parts' removal itself), the state store's checkpoint or scrub.
	// The log's records age out with its max age (logMaxAge).
	compact := []privacy.Compacter{{Name: "state", After: []string{"quarantine", "delivery", "computed_traits", "consent_history"},
		Run: func(ctx context.Context) error {
			if cfg.State == "" {
				return sqlite.Checkpoint(ctx, s.State)
			}
			return postgres.Scrub(ctx, s.State, expiredTables)
		}}}
	if db, ok := s.Events.(*duckdb.Store); ok {
		compact = append(compact, privacy.Compacter{Name: "events", After: []string{"events"}, Run: db.Compact})
	}
	s.Retention = privacy.NewRetainer(cfg.Retention, s.Governance, privacy.RetentionStores{
		BySource: []privacy.NamedSourceExpirer{
			{Name: "events", Store: s.Events}, {Name: "quarantine", Store: s.Quarantine}, {Name: "delivery", Store: s.Delivery}},
		ByDefault: []privacy.NamedExpirer{{Name: "computed_traits", Store: s.Traits}},
		Consent:   s.Consent,
		Compact:   compact,
	}, s.Metrics, logger)
	s.handler = s.routes()
	// The settings approved through the API (identity rules, lifecycle
	// stages, consent defaults, retention) override the config file's.
	if err := s.api.LoadSettings(ctx); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	return s, nil
}

// openState opens the state store: PostgreSQL when cfg.State is a
// postgres:// or postgresql:// URL, else the embedded SQLite file.
func openState(ctx context.Context, cfg config.Config) (*statestore.DB, error) {
	if cfg.State == "" {
		db, err := sqlite.Open(filepath.Join(cfg.DataDir, "state.db"))
		if err != nil {
			return nil, fmt.Errorf("state store: %w", err)
		}
		return db, nil
	}
	if u, err := url.Parse(cfg.State); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL is not repeated: it may hold a password.
		return nil, &config.UsageError{Key: "state", Message: "want empty (embedded SQLite) or a postgres:// or postgresql:// URL"}
	}
	db, err := postgres.Open(ctx, cfg.State) // its errors hide the password
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	return db, nil
}

// openEvents opens the event store: ClickHouse for a clickhouse:// URL in
// cfg.Events, else the embedded DuckDB file in the data directory.
//
// s.Events is set only on success: a nil *duckdb.Store in the interface
// would not compare equal to nil, and close would call its Close.
func (s *Server) openEvents(ctx context.Context) error {
	var (
		store eventstore.Store
		err   error
	)
	switch {
	case s.cfg.Events == "":
		var db *duckdb.Store
		// Before the open: loading the filter is when garbage piles up.
		s.stopPacer = duckdb.PaceGC()
		limit := ""
		if s.cfg.EventsMemoryLimit > 0 {
			limit = fmt.Sprintf("%dKiB", (s.cfg.EventsMemoryLimit+1023)>>10)
		}
		if db, err = duckdb.OpenWithMemoryLimit(filepath.Join(s.cfg.DataDir, "events.duckdb"), limit); err == nil {
			var limit func() int64
			if limit, s.stopEventsLimit, err = startEventsLimiter(db, s.cfg.EventsMemoryLimit); err != nil {
				db.Close()
				return fmt.Errorf("event store: %w", err)
			}
			store = db
			s.Metrics.NewGaugeFunc("tandem_events_dedup_filter_bytes", "Memory held by the embedded event store's messageId dedup filter and its key index's in-memory part, in bytes (about 1.1 per stored event at 100 million).", func() float64 {
				return float64(duckdb.FilterBytes())
			})
			s.Metrics.NewGaugeFunc("tandem_events_memory_limit_bytes", "The embedded event store's DuckDB memory limit in force: --events-memory-limit less what the dedup filter holds beyond 32 MiB, at least 64 MiB (0: DuckDB's default).", func() float64 {
				return float64(limit())
			})
		}
	case strings.HasPrefix(s.cfg.Events, "clickhouse://"):
		var ch *clickhouse.Store
		if ch, err = clickhouse.Open(ctx, s.cfg.Events); err == nil {
			store = ch
		}
	default:
		return &config.UsageError{Key: "events", Message: "want empty (embedded) or a clickhouse:// URL"}
	}
	if err != nil {
		return fmt.Errorf("event store: %w", err)
	}
	s.Events = store
	return nil
}

func (s *Server) openLog(h hooks) error {
	fsync := s.Metrics.NewHistogram("tandem_log_append_seconds", "Time to append one record to the event log and fsync it.", metrics.DefBuckets)
	recs := s.Metrics.NewCounterVec("tandem_log_records_total", "Event log records appended, by result.", "result")
	chunks := s.Metrics.NewCounter("tandem_log_requests_grouped_total", "Collection requests written to the event log (several share one record and one fsync).")
	bytes := s.Metrics.NewCounter("tandem_log_bytes_total", "Bytes appended to the event log.")
	full := s.Metrics.NewCounter("tandem_log_queue_full_total", "Appends refused because the bytes waiting for the event log were at --log-queue-bytes (collection answers 503 overloaded; imports wait).")
	// Never assign a failed Open's nil *jetstream.Log to s.Log: the
	// interface would hold a typed nil and close would call its Close.
	var (
		l   *jetstream.Log
		err error
	)
	if s.cfg.Log != "" {
		l, err = jetstream.Open(s.cfg.Log, jetstream.Options{
			Replicas: logReplicas(s.cfg), AckWait: s.cfg.LogAckWait,
			MaxBytes: s.cfg.LogMaxBytes, MaxAge: logMaxAge(s.cfg), Logger: componentLogger(s.logger, "nats"),
		})
	} else {
		l, err = jetstream.OpenEmbedded(jetstream.EmbeddedOptions{
			Dir: filepath.Join(s.cfg.DataDir, "log"), MaxBytes: s.cfg.LogMaxBytes, MaxAge: logMaxAge(s.cfg), Logger: componentLogger(s.logger, "nats"),
		})
	}
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	s.Log, s.jsLog = l, l
	if h.wrapLog != nil {
		s.Log = h.wrapLog(l)
	}
	s.Committer = eventlog.NewCommitter(s.Log, eventlog.CommitterOptions{
		MaxQueueBytes: s.cfg.QueueBytes,
		OnOverload:    func(int) { full.Add(1) },
		OnAppend: func(d time.Duration, n int, c int, err error) {
			if err != nil {
				recs.Add(1, "error")
				s.lastAppendFailure.Store(time.Now().UnixNano())
				return
			}
			s.lastAppendFailure.Store(0)
			recs.Add(1, "ok")
			fsync.Observe(d.Seconds())
			chunks.Add(uint64(c))
			bytes.Add(uint64(n))
		},
	})
	committer := s.Committer
	s.Metrics.NewGaugeFunc("tandem_log_queue_bytes", "Bytes waiting for the event log (queued or being appended); bounded by --log-queue-bytes.", func() float64 {
		return float64(committer.Stats().QueuedBytes)
	})
	return nil
}

// logMaxAge is how long the event log keeps records at start: see
// privacy.Retention.LogAge. A retention put in force later through the
// API changes it (setLogMaxAge).
func logMaxAge(cfg config.Config) time.Duration { return cfg.Retention.LogAge(cfg.LogMaxAge) }

// setLogMaxAge makes the event log follow retention p (api.Options.OnRetention).
func (s *Server) setLogMaxAge(p privacy.Retention) {
	age := p.LogAge(s.cfg.LogMaxAge)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.jsLog.SetMaxAge(ctx, age); err != nil {
		s.logger.Error("the event log's max age does not follow the new retention; it does at the next start", "max_age", age.String(), "err", err.Error())
		return
	}
	s.logger.Info("the event log's max age follows the retention in force", "max_age", age.String())
}

// logReplicas is the stream replication the configuration asks for: what
// --log-replicas says, or by default 3 when --log names three or more
// servers (a cluster) and 1 otherwise.
func logReplicas(cfg config.Config) int {
	if cfg.LogReplicas > 0 {
		return cfg.LogReplicas
	}
	if len(strings.Split(cfg.Log, ",")) >= 3 {
		return 3
	}
	return 1
}

func (s *Server) instrument() {
	s.Metrics.AddRuntime()
	s.Metrics.NewInfo("tandem_build_info", "Always 1; the labels name the tandem version and the Go version that built it.",
		map[string]string{"version": version.Version, "goversion": runtime.Version()})
	s.Metrics.NewGaugeFunc("tandem_ready", "1 when this node can accept and persist events.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.ready(ctx) == nil {
			return 1
		}
		return 0
	})
}

// ready is nil when the node can accept and persist events.
func (s *Server) ready(ctx context.Context) error {
	if err := s.Log.Ready(ctx); err != nil {
		return err
	}
	if t := s.lastAppendFailure.Load(); t != 0 && time.Since(time.Unix(0, t)) < 5*time.Second {
		return errors.New("the event log refused the last write")
	}
	// Short pings: a store that is away (PostgreSQL or ClickHouse
	// restarting) makes the node not ready until it is back. The cause
	// goes to the debug log, not to /readyz, which anyone can read: it
	// names hosts and users.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := s.State.Ping(pctx); err != nil {
		s.logger.Debug("state store ping failed", "err", err.Error())
		return errors.New("the state store does not answer")
	}
	if err := s.Events.Ping(pctx); err != nil {
		s.logger.Debug("event store ping failed", "err", err.Error())
		return errors.New("the event store does not answer")
	}
	return nil
}

// Handler is the node's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	rejected := s.Metrics.NewCounter("tandem_collect_inflight_rejected_total", "Collection requests answered 503 overloaded because --max-inflight requests were already being served.")
	s.inflight = collect.LimitInflight(collect.New(collect.Options{
		Sources:        writeKeys{s.Governance},
		Log:            s.Committer,
		Limiter:        collect.NewLimiter(s.cfg.SourceRateLimit, s.cfg.SourceBurst),
		Metrics:        s.Metrics,
		Logger:         s.logger,
		PublicURL:      s.cfg.PublicURL,
		TrustedProxies: s.trustedProxies,
		Backpressure:   s.backpressure,
	}), s.cfg.MaxInflight, rejected)
	s.Metrics.NewGaugeFunc("tandem_collect_inflight", "Collection requests being served now; bounded by --max-inflight.", func() float64 {
		return float64(s.inflight.InFlight())
	})
	for _, p := range collect.Paths {
		mux.Handle(p, s.inflight)
	}
	opts := api.Options{
		Access: s.Access, Governance: s.Governance, Quarantine: s.Quarantine,
		Events: s.Events, Log: s.Committer, Imports: s.Imports, Logger: s.logger, Stages: s.cfg.Journey.Stages,
		Identity: s.Identity, Audit: s.Audit, Consent: s.Consent, Requests: privacy.NewRequests(s.State),
		Traits: s.Traits, Audiences: s.Audiences,
		Delivery: s.Delivery, Plans: s.Plans, Changes: s.Changes,
		Catalog:    []governance.ToolProvider{governance.DestinationTools{Store: s.Governance}, s.Delivery},
		Classifier: s.Classifier, LogMaxAge: s.cfg.LogMaxAge, OnRetention: s.setLogMaxAge, Subjects: s.cfg.Privacy.Subjects,
		Suppressions: s.Suppressions, EraseLog: s.eraseLog, Quiesce: s.quiesce,
	}
	if s.cfg.Log != "" && logReplicas(s.cfg) > 1 {
		// docs/privacy.md: a replica's Raft log keeps the appends until
		// JetStream's next snapshot of the stream.
		opts.EraseLogNote = "each replica's Raft log of the stream keeps the original appends until JetStream compacts it, within 3 minutes"
	}
	if s.Pipeline != nil {
		opts.Retention = s.Retention
	}
	if s.cfg.State == "" {
		opts.ScrubState = func(ctx context.Context) (string, error) {
			return "checkpointed the write-ahead log and truncated it", sqlite.Checkpoint(ctx, s.State)
		}
	} else {
		opts.ScrubState = func(ctx context.Context) (string, error) {
			return fmt.Sprintf("VACUUM FULL of the %d tables an erasure deletes from; WAL switched and checkpointed", len(erasedTables)),
				postgres.Scrub(ctx, s.State, erasedTables)
		}
	}
	opts.Experiments, opts.ExperimentSums = experiment.NewStore(s.State), experiment.AggregatorFor(s.Events)
	if p, ok := s.Events.(analytics.Provider); ok {
		opts.Analytics = p.Analytics()
	}
	if p, ok := s.Events.(attribution.Provider); ok {
		opts.Attribution = p.Attribution()
	}
	opts.AttributionConfig = &s.cfg.Attribution
	// Experiment assignment is a browser path like collection's: wrap it
	// in the same CORS handling.
	mux.Handle("/v1/experiments/{key}/assign", collect.CORS(assign.New(assign.Options{
		Experiments: opts.Experiments, Sources: writeKeys{s.Governance},
		Identity: s.Identity, Log: s.Committer, Logger: s.logger,
	})))
	s.api = api.New(opts)
	mux.Handle("/api/v1/", s.api)
	mux.HandleFunc("/api/v1", func(w http.ResponseWriter, r *http.Request) { apierror.Write(w, api.NotFound(r)) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "ok", "version": version.Version})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			e := apierror.Of(apierror.CodeNotReady, err.Error())
			e.RetryAfter = 1
			apierror.Write(w, e)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Ready even when processing lags: collection still takes events
		// (or refuses them by the --max-pipeline-lag rule, which a load
		// balancer must not turn into taking the node out).
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready", "pipeline": s.lagDetails()})
	})
	mux.Handle("GET /metrics", s.Metrics.Handler())
	// No catch-all "/": with one, a known path with the wrong method
	// would be a 404. The mux's own 404s and 405s (with Allow) are turned
	// into the error shape by apierror.Handler.
	// The dashboard (package web): its page at "/" exactly, its files
	// under /ui/; other methods on them are 405s.
	mux.Handle("GET /{$}", web.Index())
	mux.Handle("GET /ui/", web.Assets())
	mux.HandleFunc("/v1", func(w http.ResponseWriter, r *http.Request) { apierror.Write(w, collectNotFound(r)) })
	mux.HandleFunc("/v1/{$}", func(w http.ResponseWriter, r *http.Request) { apierror.Write(w, collectNotFound(r)) })
	return apierror.Handler(mux, notFound)
}

// notFound is the 404 for a path no handler takes, by the part of the
// API it is under.
func notFound(r *http.Request) *apierror.Error {
	switch p := r.URL.Path; {
	case p == "/v1" || strings.HasPrefix(p, "/v1/"):
		return collectNotFound(r)
	case strings.HasPrefix(p, "/api/v1/"):
		return api.NotFound(r)
	}
	return apierror.Of(apierror.CodeNotFound, "no such endpoint; the endpoints are listed in GET /api/v1/openapi.json")
}

// collectNotFound answers a path under /v1 that is no collection endpoint.
func collectNotFound(*http.Request) *apierror.Error {
	eps := make([]string, 0, len(event.Types)+2)
	for _, t := range event.Types {
		eps = append(eps, "/v1/"+t)
	}
	eps = append(eps, "/v1/batch", "/v1/import")
	return apierror.Of(apierror.CodeNotFound, "no collection endpoint here; send events with POST to "+
		strings.Join(eps, ", ")+" (see GET /api/v1/openapi.json)")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve serves on ln until ctx is done, then shuts down. It returns nil
// after a clean stop; otherwise every failure joined: the listener's, the
// pipeline's (which also stops the node: a node that collects but no longer
// processes should be restarted, not left running), and each backend's
// Close, such as a final flush of the event log that failed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	pctx, stopPipeline := context.WithCancel(context.Background())
	defer stopPipeline()
	var pipeErr chan error // nil without a pipeline: never ready
	if s.runPipeline != nil {
		pipeErr = make(chan error, 1)
		go func() {
			err := s.runPipeline(pctx)
			if err != nil && pctx.Err() != nil && errors.Is(err, context.Canceled) {
				err = nil // stopped because we asked it to
			}
			if err != nil {
				s.logger.Error("the pipeline stopped; shutting down", "err", err.Error())
				err = fmt.Errorf("pipeline: %w", err)
			}
			pipeErr <- err
		}()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Lag.Run(pctx, lagCheckInterval)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.api.RunSettingsLoads(pctx, api.SettingsReload)
	}()
	if s.Pipeline != nil && s.cfg.ReplayLast > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.replay(pctx, time.Now().Add(-s.cfg.ReplayLast))
		}()
	}
	if s.Pipeline != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Audiences.RunSweeps(pctx, time.Minute)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Delivery.Run(pctx)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Retention.Run(pctx)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Suppressions.RunLoads(pctx, suppressionReload)
		}()
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.logger.Info("tandem ready", "addr", ln.Addr().String(), "data_dir", s.cfg.DataDir, "version", version.Version,
		"pipeline", s.Pipeline != nil)
	var errs []error
	pipelineDone := false
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	case err := <-pipeErr:
		pipelineDone = true
		errs = append(errs, err)
	}
	s.logger.Info("shutting down: no new requests; finishing in-flight ones")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.logger.Warn("in-flight requests did not finish in time", "err", err.Error())
	}
	stopPipeline()
	if pipeErr != nil && !pipelineDone {
		errs = append(errs, <-pipeErr)
	}
	wg.Wait()
	s.Lag.Close()
	if err := s.close(); err != nil {
		s.logger.Error("closing the backends failed", "err", err.Error())
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err == nil {
		s.logger.Info("stopped")
	}
	return err
}

// Close releases every backend (for callers that did not Serve) and
// returns their Close errors joined.
func (s *Server) Close() error { return s.close() }

// close closes the backends in order (the committer's final flush first,
// the log last) and then lets go of the data directory. It returns every
// failure, each naming its backend.
func (s *Server) close() error {
	if s.hooks.beforeClose != nil {
		s.hooks.beforeClose()
	}
	var errs []error
	if s.Committer != nil {
		if err := s.Committer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("event log: %w", err))
		}
		s.Committer = nil
	}
	if s.stopEventsLimit != nil {
		s.stopEventsLimit()
		s.stopEventsLimit = nil
	}
	if s.Events != nil {
		if err := s.Events.Close(); err != nil {
			errs = append(errs, fmt.Errorf("event store: close: %w", err))
		}
		s.Events = nil
	}
	if s.stopPacer != nil {
		s.stopPacer()
		s.stopPacer = nil
	}
	if s.State != nil {
		if err := s.State.Close(); err != nil {
			errs = append(errs, fmt.Errorf("state store: close: %w", err))
		}
		s.State = nil
	}
	if s.Log != nil {
		if err := s.Log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("event log: close: %w", err))
		}
		s.Log = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock; the file stays
		s.lock = nil
	}
	return errors.Join(errs...)
}

// erasedTables are the state store tables an erasure deletes from (the
// person's requests are updated): PostgreSQL scrubs them afterwards.
var erasedTables = []string{
	"identity_components", "identity_idents", "identity_nodes", "identity_links", "identity_decisions",
	"identity_traits", "identity_profile_ids", "privacy_consent", "privacy_consent_history", "privacy_requests",
	"quarantine_entries", "delivery_dead_letters", "audience_trait_bucket", "audience_trait_seen",
	"audience_trait_point", "audience_stage", "audience_member",
}

// expiredTables are the state store tables retention deletes from:
// PostgreSQL scrubs them after a run that removed rows.
var expiredTables = []string{
	"quarantine_entries", "delivery_dead_letters", "privacy_consent_history",
	"audience_trait_bucket", "audience_trait_point", "audience_stage",
}

// suppressionReload is how often a pipeline node reads the suppression
// list again, to learn of erasures carried out through another node.
const suppressionReload = 10 * time.Second

// quiesce waits, for an erasure, until no event processed without the
// suppression list can still be written: the pipeline's batch under way
// on this node, and on a shared state store the other nodes' next reload
// of the list (and their batch under way then).
func (s *Server) quiesce(ctx context.Context) error {
	if s.Pipeline != nil {
		if err := s.Pipeline.Barrier(ctx); err != nil {
			return err
		}
	}
	if s.cfg.State == "" {
		return nil // the embedded state store: this node alone
	}
	select {
	case <-time.After(suppressionReload + 5*time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// eraseLog removes the entries drop picks from the records in the event
// log (an erasure): each record holding one is replaced by a copy without
// it, which the consumers that had processed the original skip, and the
// original is erased (jetstream.Log.Rewrite). It returns the number of
// records erased.
func (s *Server) eraseLog(ctx context.Context, drop func(event.Entry) bool) (int, error) {
	st, err := s.jsLog.Rewrite(ctx, func(rec []byte, done []string) ([]byte, bool, error) {
		out, dropped, err := event.Redact(rec, drop, done)
		if err != nil {
			// Not a record tandem wrote: nothing of the person to find.
			return nil, false, nil
		}
		return out, dropped > 0, nil
	})
	return st.Erased, err
}

// writeKeys resolves write keys for collection through governance's
// cache: a change to a source takes effect at once on this node and within
// governance.WriteKeyTTL on the others.
type writeKeys struct{ gov *governance.Store }

func (w writeKeys) LookupWriteKey(ctx context.Context, key string) (collect.Source, error) {
	src, err := w.gov.LookupWriteKey(ctx, key)
	if errors.Is(err, governance.ErrUnknownKey) {
		return collect.Source{}, collect.ErrUnknownKey
	}
	if err != nil {
		return collect.Source{}, err
	}
	return collect.Source{ID: src.ID, Name: src.Name, Approval: src.Approval, AllowedOrigins: src.AllowedOrigins, IPPolicy: src.IPPolicy}, nil
}
