package imports

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"tandem/access"
	"tandem/event"
	"tandem/eventlog"
	"tandem/governance"
	"tandem/statestore"
)

// Appender makes a chunk of log entries durable (the event log's group
// committer).
type Appender interface {
	Append(ctx context.Context, entries []byte) error
}

// Quarantine keeps rows that failed, each under a stable key.
type Quarantine interface {
	AddKeyed(ctx context.Context, keys []uint64, problems []event.Problem) error
}

// Sources finds the source an import goes into.
type Sources interface {
	GetSource(ctx context.Context, id string) (governance.Source, error)
	ListSources(ctx context.Context, limit int, cursor string) ([]governance.Source, string, error)
}

// Errors a caller can tell apart.
var (
	ErrBusy        = errors.New("imports: this import is running")
	ErrNotApproved = errors.New("imports: source not approved")
)

// DefaultMaxErrors is how many failed rows an import tolerates unless told
// otherwise; one more aborts it.
const DefaultMaxErrors = 1000

// Options configure a [Service].
type Options struct {
	DB         *statestore.DB
	Log        Appender
	Quarantine Quarantine
	Sources    Sources
	Logger     *slog.Logger
	// ChunkBytes bounds the log entries of one append; default 1 MiB.
	ChunkBytes int
	// ChunkRows bounds the rows of one append; default 4000.
	ChunkRows int
	// InFlight is how many appends may wait for the log at once; default 8.
	InFlight int
	// SaveEvery is how often a running import's progress is written to
	// the state store; default 250ms.
	SaveEvery time.Duration
	// AppendRetries is how often a failed append is tried again (the
	// rows' messageIds make a repeat harmless) before the import stops
	// as interrupted; default 5, with backoff from RetryBackoff (default
	// 200ms) doubling up to 5s.
	AppendRetries int
	RetryBackoff  time.Duration
	Now           func() time.Time
}

// Service runs imports: it creates them, streams their data through a
// mapping into the event log, and reports their progress.
type Service struct {
	opts  Options
	store store

	mu     sync.Mutex
	active map[string]*run
}

// NewService returns a Service; the state store must have [Migrations].
func NewService(opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = 1 << 20
	}
	if opts.ChunkRows <= 0 {
		opts.ChunkRows = 4000
	}
	if opts.InFlight <= 0 {
		opts.InFlight = 8
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = 250 * time.Millisecond
	}
	if opts.AppendRetries <= 0 {
		opts.AppendRetries = 5
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 200 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{opts: opts, store: store{db: opts.DB}, active: map[string]*run{}}
}

// Spec describes a new import.
type Spec struct {
	Source    string // source id or name
	Format    string // csv or ndjson; "" takes the mapping's, else csv
	Mapping   []byte // YAML or JSON; may be empty for NDJSON Segment events
	Key       string // the client's fingerprint of the data; the same key resumes an unfinished import
	MaxErrors *int   // nil: DefaultMaxErrors; -1: no limit
	Delimiter string // overrides the mapping's csv.delimiter
	Encoding  string // overrides the mapping's csv.encoding
	Restart   bool   // with Key: start over instead of resuming
	Size      int64  // the data's size in bytes if known, for the ETA
}

// Create records a new import, or finds the unfinished one with the same
// source, key, format, mapping and options and returns it, ready to resume.
// created is false when an earlier import was found. Bad input gives a
// *[statestore.FieldError] or *[MappingError].
func (s *Service) Create(ctx context.Context, spec Spec, by access.User) (st Status, created bool, err error) {
	src, err := s.resolveSource(ctx, spec.Source)
	if err != nil {
		return Status{}, false, err
	}
	var m *Mapping
	if len(spec.Mapping) > 0 {
		if !utf8.Valid(spec.Mapping) {
			return Status{}, false, merr("mapping", "is not valid UTF-8")
		}
		if m, err = ParseMapping(spec.Mapping); err != nil {
			return Status{}, false, err
		}
	}
	format := spec.Format
	if format == "" && m != nil {
		format = m.Format
	}
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "ndjson" {
		return Status{}, false, &statestore.FieldError{Field: "format", Message: `must be "csv" or "ndjson"`}
	}
	if m != nil && m.Format != "" && m.Format != format {
		return Status{}, false, &statestore.FieldError{Field: "format", Message: fmt.Sprintf("is %q but the mapping says %q", format, m.Format)}
	}
	if format == "csv" && m == nil {
		return Status{}, false, merr("mapping", "a CSV import needs a mapping")
	}
	delim, enc := ",", EncodingUTF8
	if m != nil {
		delim, enc = string(m.CSV.Delimiter), m.CSV.Encoding
	}
	if spec.Delimiter != "" {
		r, ok := ParseDelimiter(spec.Delimiter)
		if !ok {
			return Status{}, false, &statestore.FieldError{Field: "delimiter", Message: "must be one character (or \"tab\"), not a quote or line break"}
		}
		delim = string(r)
	}
	if spec.Encoding != "" {
		if enc = NormalizeEncoding(spec.Encoding); enc == "" {
			return Status{}, false, &statestore.FieldError{Field: "encoding", Message: "must be utf-8, latin-1 or windows-1252"}
		}
	}
	maxErrors := int64(DefaultMaxErrors)
	if spec.MaxErrors != nil {
		if *spec.MaxErrors < -1 {
			return Status{}, false, &statestore.FieldError{Field: "maxErrors", Message: "must be -1 (no limit) or more"}
		}
		maxErrors = int64(*spec.MaxErrors)
	}
	if len(spec.Key) > 200 || !utf8.ValidString(spec.Key) {
		return Status{}, false, &statestore.FieldError{Field: "key", Message: "must be at most 200 characters"}
	}
	if spec.Size < 0 {
		return Status{}, false, &statestore.FieldError{Field: "size", Message: "must be 0 or more"}
	}
	runKey := ""
	if spec.Key != "" {
		h := sha256.New()
		for _, part := range []string{spec.Key, format, string(spec.Mapping), delim, enc} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		runKey = hex.EncodeToString(h.Sum(nil))
		old, found, err := s.store.byKey(ctx, src.ID, runKey)
		if err != nil {
			return Status{}, false, err
		}
		if found {
			if spec.Restart {
				if s.isActive(old.ID) {
					return Status{}, false, ErrBusy
				}
				if err := s.restart(ctx, &old); err != nil {
					return Status{}, false, err
				}
			}
			if !s.isActive(old.ID) {
				old.MaxErrors = maxErrors
				if spec.Size > 0 {
					old.BytesTotal = spec.Size
				}
				if err := s.store.saveProgress(ctx, old); err != nil {
					return Status{}, false, err
				}
			}
			st, err := s.Get(ctx, old.ID)
			return st, false, err
		}
	}
	now := s.opts.Now().UTC()
	r := record{
		ID: statestore.NewID("imp"), SourceID: src.ID, RunKey: runKey, Format: format, Delimiter: delim, Encoding: enc,
		MaxErrors: maxErrors, Status: Waiting, BytesTotal: spec.Size, CreatedBy: by.ID, CreatedAt: now, UpdatedAt: now,
	}
	if m != nil {
		r.Mapping = string(spec.Mapping)
	}
	if err := s.store.insert(ctx, r); err != nil {
		return Status{}, false, err
	}
	s.opts.Logger.Info("import created", "import", r.ID, "source", src.ID, "format", format, "by", by.ID)
	return statusOf(r), true, nil
}

// restart resets an import to its start.
func (s *Service) restart(ctx context.Context, r *record) error {
	r.Status, r.Imported, r.Failed, r.Skipped, r.ResumeLine, r.ResumeOffset, r.ResumeCRC = Waiting, 0, 0, 0, 0, 0, 0
	r.ErrCode, r.ErrMessage, r.FinishedAt = "", "", time.Time{}
	if err := s.store.clearErrors(ctx, r.ID); err != nil {
		return err
	}
	return s.store.saveProgress(ctx, *r)
}

// resolveSource finds an approved source by id or, failing that, by name
// (ignoring case).
func (s *Service) resolveSource(ctx context.Context, ref string) (governance.Source, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return governance.Source{}, &statestore.FieldError{Field: "source", Message: "required: the id or name of the source to import into"}
	}
	src, err := s.opts.Sources.GetSource(ctx, ref)
	if err != nil && !isNotFound(err) {
		return src, err
	}
	if err != nil {
		found := false
		cursor := ""
		for !found {
			list, next, err := s.opts.Sources.ListSources(ctx, 1000, cursor)
			if err != nil {
				return src, err
			}
			for _, c := range list {
				if strings.EqualFold(c.Name, ref) {
					src, found = c, true
					break
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !found {
			return src, &statestore.FieldError{Field: "source", Message: fmt.Sprintf("no source with id or name %s; create one with POST /api/v1/sources (kind \"import\")", quote(ref)), Err: statestore.ErrNotFound}
		}
	}
	if src.Approval != governance.Approved {
		return src, fmt.Errorf("%w: source %s is %s; it may send data once approved", ErrNotApproved, src.ID, src.Approval)
	}
	return src, nil
}

func (s *Service) isActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[id] != nil
}

// Status is an import as the API shows it.
type Status struct {
	ID            string      `json:"id"`
	SourceID      string      `json:"sourceId"`
	Status        string      `json:"status"`
	Format        string      `json:"format"`
	MaxErrors     int64       `json:"maxErrors"`
	RowsRead      int64       `json:"rowsRead"`     // rows read so far (imported, failed, or on their way to the log)
	RowsImported  int64       `json:"rowsImported"` // rows whose events are durable in the event log
	RowsFailed    int64       `json:"rowsFailed"`   // rows reported as errors and kept in the quarantine
	RowsSkipped   int64       `json:"rowsSkipped"`  // rows of earlier attempts skipped by the last resume
	BytesRead     int64       `json:"bytesRead"`
	BytesTotal    int64       `json:"bytesTotal,omitempty"`
	RowsPerSecond float64     `json:"rowsPerSecond"`        // in the current (or last) attempt
	ETASeconds    *float64    `json:"etaSeconds,omitempty"` // while running, when the size is known
	Attempts      int64       `json:"attempts"`             // times its data was sent
	Resume        ResumePoint `json:"resume"`               // where a new attempt starts
	Error         *Problem    `json:"error,omitempty"`      // why it failed, aborted or was interrupted
	Errors        []RowError  `json:"errors,omitempty"`     // the first row errors, by line
	ErrorsNext    string      `json:"errorsNext,omitempty"` // cursor for GET /imports/{id}/errors
	CreatedBy     string      `json:"createdBy"`
	CreatedAt     time.Time   `json:"createdAt"`
	StartedAt     time.Time   `json:"startedAt,omitzero"`
	UpdatedAt     time.Time   `json:"updatedAt"`
	FinishedAt    time.Time   `json:"finishedAt,omitzero"`
}

// ResumePoint is where the next attempt of an import starts: the rows
// before it are safely in the log (or reported as errors).
type ResumePoint struct {
	Rows   int64 `json:"rows"`
	Line   int64 `json:"line"`   // the last line read
	Offset int64 `json:"offset"` // bytes of the data, after a byte order mark
}

// Problem is why an import stopped.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func statusOf(r record) Status {
	st := Status{
		ID: r.ID, SourceID: r.SourceID, Status: r.Status, Format: r.Format, MaxErrors: r.MaxErrors,
		RowsRead: r.Imported + r.Failed, RowsImported: r.Imported, RowsFailed: r.Failed, RowsSkipped: r.Skipped,
		BytesRead: r.ResumeOffset, BytesTotal: r.BytesTotal, Attempts: r.Attempts,
		Resume:    ResumePoint{Rows: r.Imported + r.Failed, Line: r.ResumeLine, Offset: r.ResumeOffset},
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, UpdatedAt: r.UpdatedAt, FinishedAt: r.FinishedAt,
	}
	if r.ErrCode != "" {
		st.Error = &Problem{Code: r.ErrCode, Message: r.ErrMessage}
	}
	if !r.FinishedAt.IsZero() && !r.StartedAt.IsZero() {
		if d := r.FinishedAt.Sub(r.StartedAt).Seconds(); d > 0 {
			st.RowsPerSecond = float64(r.Imported+r.Failed-r.Skipped) / d
		}
	}
	return st
}

// Get returns an import with its first 100 row errors.
func (s *Service) Get(ctx context.Context, id string) (Status, error) {
	s.mu.Lock()
	ru := s.active[id]
	s.mu.Unlock()
	var st Status
	if ru != nil {
		st = ru.status(s.opts.Now())
	} else {
		r, err := s.store.get(ctx, id)
		if err != nil {
			return Status{}, err
		}
		st = statusOf(r)
		if st.Status == Running {
			// The process that ran it stopped without finishing.
			st.Status = Interrupted
			st.Error = &Problem{Code: "interrupted", Message: "the server stopped during the import; send the data again to resume"}
		}
	}
	errs, next, err := s.store.errors(ctx, id, 100, "")
	if err != nil {
		return Status{}, err
	}
	st.Errors, st.ErrorsNext = errs, next
	return st, nil
}

// Errors lists an import's row errors by line, a page at a time.
func (s *Service) Errors(ctx context.Context, id string, limit int, cursor string) ([]RowError, string, error) {
	if _, err := s.store.get(ctx, id); err != nil {
		return nil, "", err
	}
	return s.store.errors(ctx, id, limit, cursor)
}

// run is an import being run.
type run struct {
	mu  sync.Mutex
	rec record // guarded by mu

	read, imported, failed, bytes atomic.Int64
	start                         time.Time
	startRows                     int64         // rows done when this attempt started
	startBytes                    int64         // data bytes before the resume point
	done                          chan struct{} // closed when the attempt is no longer active
}

// ended reports whether the attempt has reached its final status.
func (ru *run) ended() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.rec.Status != Running
}

func (ru *run) status(now time.Time) Status {
	ru.mu.Lock()
	r := ru.rec
	ru.mu.Unlock()
	r.Imported, r.Failed = ru.imported.Load(), ru.failed.Load()
	st := statusOf(r)
	st.RowsRead = ru.read.Load()
	st.BytesRead = ru.bytes.Load()
	st.UpdatedAt = now.UTC()
	if d := now.Sub(ru.start).Seconds(); d > 0 {
		st.RowsPerSecond = float64(r.Imported+r.Failed-ru.startRows) / d
		if r.BytesTotal > 0 && st.BytesRead > 0 {
			done := float64(st.BytesRead-ru.startBytes) / d
			if done > 0 {
				eta := float64(max(r.BytesTotal-st.BytesRead, 0)) / done
				st.ETASeconds = &eta
			}
		}
	}
	return st
}

// pending is a chunk on its way to the log.
type pending struct {
	entries  []byte
	events   int
	problems []event.Problem
	keys     []uint64
	errs     []RowError
	line     int64
	offset   int64
	crc      uint64
	done     chan struct{}
	err      error
}

// Run reads an import's data from body and imports it, resuming after the
// rows an earlier attempt made durable. It returns when the data ends (or
// fails), after every row read is durable or reported; the status tells how
// it ended. size is the body's length if known, else -1. A *MappingError
// means the data does not fit the mapping (a column missing from the
// header, say).
func (s *Service) Run(ctx context.Context, id string, body io.Reader, size int64) (Status, error) {
	rec, err := s.store.get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	// Seen by Get from the moment it is active: the record as read, with
	// its counts, until this attempt owns the import and reads it again.
	ru := &run{rec: rec, start: s.opts.Now(), done: make(chan struct{})}
	ru.rec.Status = Running
	ru.imported.Store(rec.Imported)
	ru.failed.Store(rec.Failed)
	ru.read.Store(rec.Imported + rec.Failed)
	ru.startRows = rec.Imported + rec.Failed
	for {
		s.mu.Lock()
		prev := s.active[id]
		if prev == nil {
			s.active[id] = ru
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		// An attempt that has ended (its final status is already
		// visible) is only being put away: wait for it rather than
		// refuse a client that saw the status and sent the data again.
		if prev.ended() {
			select {
			case <-prev.done:
				continue
			case <-ctx.Done():
				return Status{}, ctx.Err()
			}
		}
		return Status{}, ErrBusy
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.active, id)
			s.mu.Unlock()
			close(ru.done)
		})
	}
	defer release()
	// Read the record again now that this attempt owns the import: a
	// previous attempt may have saved its end meanwhile.
	if rec, err = s.store.get(ctx, id); err != nil {
		return Status{}, err
	}
	ru.mu.Lock()
	ru.rec = rec
	ru.rec.Status = Running
	ru.mu.Unlock()
	if _, err := s.resolveSource(ctx, rec.SourceID); err != nil {
		return Status{}, err
	}

	ctx = context.WithoutCancel(ctx) // what was read is finished even if the client goes away
	now := s.opts.Now().UTC()
	ru.mu.Lock()
	ru.rec.Status, ru.rec.Attempts, ru.rec.StartedAt, ru.rec.UpdatedAt = Running, rec.Attempts+1, now, now
	ru.rec.FinishedAt, ru.rec.ErrCode, ru.rec.ErrMessage = time.Time{}, "", ""
	if size > 0 {
		ru.rec.BytesTotal = size
	}
	started := ru.rec
	ru.mu.Unlock()
	ru.imported.Store(rec.Imported)
	ru.failed.Store(rec.Failed)
	ru.startRows = rec.Imported + rec.Failed
	ru.startBytes = rec.ResumeOffset
	ru.read.Store(ru.startRows)
	if err := s.store.saveProgress(ctx, started); err != nil {
		return Status{}, err
	}
	s.opts.Logger.Info("import started", "import", id, "source", rec.SourceID, "attempt", ru.rec.Attempts,
		"resume_rows", ru.startRows)

	code, msg, runErr := s.importRows(ctx, ru, body)
	ru.mu.Lock()
	ru.rec.Imported, ru.rec.Failed = ru.imported.Load(), ru.failed.Load()
	ru.rec.FinishedAt = s.opts.Now().UTC()
	ru.rec.UpdatedAt = ru.rec.FinishedAt
	switch code {
	case "":
		ru.rec.Status = Completed
	case "too_many_errors":
		ru.rec.Status = Aborted
	case "interrupted", "log_unavailable":
		ru.rec.Status = Interrupted
	default:
		ru.rec.Status = Failed
	}
	ru.rec.ErrCode, ru.rec.ErrMessage = code, msg
	final := ru.rec
	ru.mu.Unlock()
	if err := s.store.saveProgress(ctx, final); err != nil {
		return Status{}, err
	}
	s.opts.Logger.Info("import ended", "import", id, "status", final.Status, "rows_imported", final.Imported,
		"rows_failed", final.Failed, "code", code)
	release()
	st, err := s.Get(ctx, id)
	if err != nil {
		return Status{}, err
	}
	if final.Status == Completed || final.Status == Aborted {
		st.RowsPerSecond = float64(final.Imported+final.Failed-ru.startRows) / max(final.FinishedAt.Sub(final.StartedAt).Seconds(), 1e-9)
	}
	return st, runErr
}

// importRows does the work of Run. It returns an error code and message
// when the import did not complete, and a *MappingError for data that
// does not fit the mapping.
func (s *Service) importRows(ctx context.Context, ru *run, body io.Reader) (string, string, error) {
	rec := ru.rec
	var m *Mapping
	if rec.Mapping != "" {
		var err error
		if m, err = ParseMapping([]byte(rec.Mapping)); err != nil {
			return "invalid_mapping", err.Error(), err
		}
		m.CSV.Delimiter, _ = ParseDelimiter(rec.Delimiter)
		m.CSV.Encoding = rec.Encoding
	}
	counted := &countingReader{r: body, n: &ru.bytes}
	var rr rowReader
	var p *plan
	switch {
	case rec.Format == "csv":
		cr, err := newCSVReader(counted, m.CSV)
		if err != nil {
			return readFailure(err)
		}
		if p, err = m.bindCSV(cr.header); err != nil {
			return "invalid_mapping", err.Error(), err
		}
		rr = cr
	case m != nil:
		var paths []string
		var err error
		if p, paths, err = m.bindNDJSON(); err != nil {
			return "invalid_mapping", err.Error(), err
		}
		rr = newNDJSONReader(counted, paths)
	default:
		p = &plan{raw: true}
		rr = newNDJSONReader(counted, nil)
	}
	p.sourceID, p.importID = rec.SourceID, rec.ID
	// Minimisation (docs/privacy.md): a row's context.ip, an NDJSON
	// event's own, follows the source's ipPolicy before the log.
	src, err := s.opts.Sources.GetSource(ctx, rec.SourceID)
	if err != nil {
		return "interrupted", "the source could not be read from the state store; send the data again to resume", nil
	}
	ipPolicy := src.IPPolicy

	// Skip what earlier attempts made durable, checking it is the same data.
	skip := rec.Imported + rec.Failed
	for i := int64(0); i < skip; i++ {
		_, err := rr.next()
		if errors.Is(err, io.EOF) {
			return "resume_mismatch", "the data is shorter than what earlier attempts imported; send the same data, or restart", nil
		}
		if err != nil {
			return readFailure(err)
		}
	}
	if off, crc := rr.position(); skip > 0 && (off != rec.ResumeOffset || crc != rec.ResumeCRC) {
		return "resume_mismatch", "the data differs from what earlier attempts imported; send the same data, or restart the import", nil
	}
	ru.mu.Lock()
	ru.rec.Skipped = skip
	ru.mu.Unlock()

	// Appends run concurrently; completions are handled in order so the
	// resume point only moves past rows that are durable.
	queue := make(chan *pending, s.opts.InFlight)
	var logErr atomic.Value
	completed := make(chan struct{})
	go func() {
		defer close(completed)
		// Progress is saved by a goroutine of its own, so a state store
		// busy with other writers (the pipeline's transactions on a loaded
		// node) slows the saves, not the import. It saves snapshots in
		// the order they were taken; one that finds the saver busy is
		// skipped, and a later one carries its progress.
		latest := make(chan record, 1)
		saved := make(chan struct{})
		go func() {
			defer close(saved)
			for snap := range latest {
				if err := s.store.saveProgress(ctx, snap); err != nil {
					s.opts.Logger.Warn("import progress not saved", "import", snap.ID, "err", err.Error())
				}
			}
		}()
		defer func() {
			close(latest)
			<-saved // before the final save, which must come last
		}()
		lastSave := time.Now()
		for pc := range queue {
			<-pc.done
			if pc.err == nil && len(pc.problems) > 0 {
				pc.err = s.opts.Quarantine.AddKeyed(ctx, pc.keys, pc.problems)
				if pc.err == nil {
					pc.err = s.store.addErrors(ctx, ru.rec.ID, pc.errs)
				}
			}
			if pc.err != nil {
				if logErr.Load() == nil {
					logErr.Store(pc.err)
				}
				continue // nothing after a failed chunk moves the resume point
			}
			if logErr.Load() != nil {
				continue
			}
			ru.imported.Add(int64(pc.events))
			ru.failed.Add(int64(len(pc.errs)))
			ru.mu.Lock()
			ru.rec.ResumeLine, ru.rec.ResumeOffset, ru.rec.ResumeCRC = pc.line, pc.offset, pc.crc
			ru.rec.Imported, ru.rec.Failed = ru.imported.Load(), ru.failed.Load()
			ru.rec.UpdatedAt = s.opts.Now().UTC()
			snap := ru.rec
			ru.mu.Unlock()
			if time.Since(lastSave) >= s.opts.SaveEvery {
				select {
				case latest <- snap:
					lastSave = time.Now()
				default:
				}
			}
		}
	}()

	receivedAt := s.opts.Now().UTC()
	cur := &pending{}
	failedSoFar := rec.Failed
	flush := func() {
		if cur.events == 0 && len(cur.errs) == 0 {
			return
		}
		pc := cur
		pc.offset, pc.crc = rr.position()
		pc.done = make(chan struct{})
		if pc.events == 0 {
			close(pc.done)
		} else {
			go func() {
				pc.err = s.append(ctx, rec.ID, pc.entries)
				close(pc.done)
			}()
		}
		queue <- pc
		cur = &pending{}
	}
	var code, msg string
	var one [1]event.Event
	for {
		if err := logErr.Load(); err != nil {
			code, msg = "log_unavailable", "the event log did not take the rows; send the data again to resume"
			break
		}
		r, err := rr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			code, msg, _ = readFailure(err)
			break
		}
		ru.read.Add(1)
		ev, rerr := p.convert(r, receivedAt)
		cur.line = int64(r.line)
		if rerr != nil {
			cur.errs = append(cur.errs, *rerr)
			cur.keys = append(cur.keys, quarantineKey(rec.SourceID, rerr.MessageID))
			cur.problems = append(cur.problems, event.Problem{
				SourceID: rec.SourceID, MessageID: rerr.MessageID, ReceivedAt: receivedAt, Index: rerr.Line,
				Code: rerr.Code, Field: rerr.Column, Message: fmt.Sprintf("import %s, line %d: %s", rec.ID, rerr.Line, rerr.Message),
				Raw: event.MinimiseEvent(append([]byte(nil), r.raw...), ipPolicy),
			})
			failedSoFar++
			if rec.MaxErrors >= 0 && failedSoFar > rec.MaxErrors {
				code, msg = "too_many_errors", fmt.Sprintf("more than %d rows failed; the import stopped after line %d (fix the data or mapping and import again: nothing is duplicated)", rec.MaxErrors, r.line)
				break
			}
		} else {
			ev.Raw = event.MinimiseEvent(ev.Raw, ipPolicy)
			one[0] = ev
			cur.entries = event.AppendEntries(cur.entries, rec.SourceID, one[:], nil)
			cur.events++
		}
		if cur.events+len(cur.errs) >= s.opts.ChunkRows || len(cur.entries) >= s.opts.ChunkBytes-event.MaxEventBytes-64 {
			flush()
		}
	}
	flush()
	close(queue)
	<-completed
	if err := logErr.Load(); err != nil {
		s.opts.Logger.Warn("import stopped: event log append failed", "import", rec.ID, "err", err.(error).Error())
		return "log_unavailable", "the event log did not take the rows; send the data again to resume", nil
	}
	return code, msg, nil
}

// append makes entries durable, retrying what may pass (a briefly
// unavailable log). An overloaded log (its queue at the byte budget) is not
// a failure: the import waits for room, as long as its context lasts, so
// that a bulk load yields to live collection instead of stopping.
func (s *Service) append(ctx context.Context, id string, entries []byte) error {
	backoff := s.opts.RetryBackoff
	wait := overloadWait
	for try := 0; ; {
		err := s.opts.Log.Append(ctx, entries)
		if errors.Is(err, eventlog.ErrOverloaded) {
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = overloadWait
		if err == nil || try >= s.opts.AppendRetries || errors.Is(err, eventlog.ErrTooLarge) || errors.Is(err, eventlog.ErrClosed) {
			return err
		}
		s.opts.Logger.Warn("import append failed; retrying", "import", id, "err", err.Error(), "retry_in", backoff.String())
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
		try++
	}
}

// overloadWait is the first wait of an import whose append found the log's
// queue full; it doubles up to a second while the queue stays full.
const overloadWait = 20 * time.Millisecond

// sleepCtx waits d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readFailure describes an error reading the data.
func readFailure(err error) (string, string, error) {
	var me *MappingError
	if errors.As(err, &me) {
		return "invalid_file", err.Error(), err
	}
	return "interrupted", "the data ended early (" + err.Error() + "); send it again to resume", nil
}

// quarantineKey is a failed row's stable quarantine key: in the keyed
// range (bit 62 set), derived from its source and messageId.
func quarantineKey(sourceID, messageID string) uint64 {
	h := sha256.Sum256([]byte("import\x00" + sourceID + "\x00" + messageID))
	return binary.BigEndian.Uint64(h[:8])&(1<<62-1) | 1<<62
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func isNotFound(err error) bool { return errors.Is(err, statestore.ErrNotFound) }
