package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"tandem/event"
	"tandem/eventstore/duckdb"
)

const dedupUsage = `Usage: tandem bench dedup [flags]

Measures the embedded event store's messageId dedup with a full window, in
this process, on a temporary DuckDB file (set TMPDIR to choose its disk):

  fill      --window events written straight into the events table in SQL
            (INSERT … SELECT, with the real key_hash), not through Append,
            by a child process, which then writes the key index in one
            pass from the known messageIds (what the first open would
            otherwise rebuild from the table: ten minutes at 100 million)
  open      open the store in this process: time to load the dedup filter
            (and, the first time, to build the exact key index from the
            table), its size in bytes per id, Go heap and process RSS
  append    --append new events through Append in --batch-event batches:
            events/s, CPU per event, how many ids the filter sent to the
            key index (prefix collisions: every one of these events is new),
            the index blocks read, and the ids checked against the table
  redeliver append again --redeliver batches already stored (a pipeline
            replay after a crash): seconds per batch, all found duplicate
  baseline  the same append on an empty store, in the same run
  node      with --node: a real "tandem serve" child on a data directory
            whose event store is the window (a hard link to the filled
            file): time until ready, its memory after the open and after
            --append events sent through /v1/batch by --clients clients
            (RSS, anonymous and file-backed; Go heap; the dedup filter;
            what is neither, mostly DuckDB), its peak RSS (after the
            redelivery, and over its whole life with the stop), the rate
            from the first request until all were stored, CPU per event, and
            --redeliver × --batch of them sent again (all must be counted
            duplicate). --node-binary runs the same phase first with
            another build (e.g. main's) as the same-run baseline;
            --store=false skips the in-process phases.

--window-file keeps the filled window at that path (filled only if the file
does not exist), so runs can share one fill: at 100 million events it takes
20 minutes or more.

It reports figures; it never fails on them. Exit status 1 means a phase
could not run.

Flags:
`

type dedupOptions struct {
	Window    int64 `json:"window"`
	Append    int   `json:"append"`
	Batch     int   `json:"batch"`
	Redeliver int   `json:"redeliver"`
	JSON      bool  `json:"json"`
	// MemoryLimit is DuckDB's memory_limit for the measuring store; ""
	// leaves DuckDB's default (80% of RAM), as `tandem serve` does.
	MemoryLimit string      `json:"duckdbMemoryLimit,omitempty"`
	WindowFile  string      `json:"windowFile,omitempty"`
	Store       bool        `json:"store"`
	Node        bool        `json:"node"`
	NodeBinary  string      `json:"nodeBinary,omitempty"`
	NodeArgs    stringsFlag `json:"nodeArgs,omitempty"`
	Clients     int         `json:"clients"`
	fillPath    string
	indexPath   string
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (f *stringsFlag) String() string     { return strings.Join(*f, " ") }
func (f *stringsFlag) Set(v string) error { *f = append(*f, v); return nil }

// DedupReport is what `tandem bench dedup` measured.
type DedupReport struct {
	Command    string       `json:"command"`
	Flags      dedupOptions `json:"flags"`
	GOMAXPROCS int          `json:"gomaxprocs"`
	NumCPU     int          `json:"numCpu"`
	Go         string       `json:"go"`

	FillSeconds     float64 `json:"fillSeconds"`
	OpenSeconds     float64 `json:"openSeconds"`
	Fingerprints    int64   `json:"fingerprints"`
	FingerprintBits int     `json:"fingerprintBits"`
	FilterBytes     int64   `json:"filterBytes"`
	BytesPerID      float64 `json:"bytesPerId"`
	// The exact key index (absent before it existed): hashes, runs on
	// disk, its memory (part of FilterBytes), whether the open rebuilt
	// it from the table.
	IndexHashes  int64   `json:"indexHashes,omitempty"`
	IndexRuns    int     `json:"indexRuns,omitempty"`
	IndexBytes   int64   `json:"indexBytes,omitempty"`
	IndexRebuilt bool    `json:"indexRebuilt,omitempty"`
	RSSBeforeMiB float64 `json:"rssBeforeMiB"` // process RSS just before the open
	HeapMiB      float64 `json:"heapMiB"`      // Go heap in use after open (GC'd)
	RSSMiB       float64 `json:"rssMiB"`       // process RSS after open
	RSSAfterMiB  float64 `json:"rssAfterMiB"`  // process RSS after the append phases
	PeakRSSMiB   float64 `json:"peakRssMiB"`   // process peak RSS from the open on (load included)

	Full     DedupAppend `json:"full"`  // append with the window full
	Empty    DedupAppend `json:"empty"` // same append on an empty store
	Redeliv  float64     `json:"redeliverSecondsPerBatch"`
	RedelivN int         `json:"redeliverNewStored"` // must be 0

	Nodes []DedupNode `json:"nodes,omitempty"` // --node-binary's first

	Failures []string `json:"failures,omitempty"`
}

// DedupAppend is one append phase's figures.
type DedupAppend struct {
	Events       int     `json:"events"`
	Stored       int     `json:"stored"`
	Seconds      float64 `json:"seconds"`
	PerSec       float64 `json:"eventsPerSec"`
	CheckedIDs   int64   `json:"checkedIds"`
	CheckQueries int64   `json:"checkQueries"`
	// FilterHits are the ids the filter sent to the exact index,
	// IndexReads the blocks of runs read for them.
	FilterHits int64 `json:"filterHits"`
	IndexReads int64 `json:"indexReads"`
	// CPUMicros is this process's CPU time per appended event.
	CPUMicros float64 `json:"cpuMicrosPerEvent"`
}

func dedupMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench dedup"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o dedupOptions
	fs.Int64Var(&o.Window, "window", 10_000_000, "events already stored when appending (the dedup window)")
	fs.IntVar(&o.Append, "append", 500_000, "new events appended through Append with the window full")
	fs.IntVar(&o.Batch, "batch", 10_000, "events per Append")
	fs.IntVar(&o.Redeliver, "redeliver", 5, "batches appended again as a replay")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&o.MemoryLimit, "duckdb-memory-limit", "", "DuckDB memory_limit of the in-process store (e.g. 256MB); empty: DuckDB's default, 80% of RAM")
	fs.StringVar(&o.WindowFile, "window-file", "", "DuckDB `FILE` of the window, kept: filled if it does not exist, else used as it is; empty: a temporary file")
	fs.BoolVar(&o.Store, "store", true, "measure the store in this process (open, append, redeliver, empty-store baseline)")
	fs.BoolVar(&o.Node, "node", false, "measure a whole node: a tandem serve child on the window")
	fs.StringVar(&o.NodeBinary, "node-binary", "", "with --node: another tandem `EXECUTABLE` measured first in the same way, as the baseline")
	fs.Var(&o.NodeArgs, "node-arg", "with --node: an extra argument of this build's tandem serve (repeatable), e.g. --node-arg=--events-memory-limit=0")
	fs.IntVar(&o.Clients, "clients", 4, "with --node: concurrent HTTP clients sending 100-event batches")
	// Internal: the fill phase runs in a child process, so that the
	// memory figures of the measuring process are not those of the fill.
	fs.StringVar(&o.fillPath, "fill-only", "", "")
	// Internal: writes the key index of a window filled (by --fill-only
	// of a build without it) with exactly --window events, no more.
	fs.StringVar(&o.indexPath, "index-only", "", "")
	if code, ok := parseFlags(fs, args, dedupUsage, stdout, stderr); !ok {
		return code
	}
	if o.fillPath != "" {
		if err := fillFile(context.Background(), o.fillPath, o.Window, func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }); err != nil {
			fmt.Fprintf(stderr, "%s: fill: %v\n", cmd, err)
			return 1
		}
		return 0
	}
	if o.indexPath != "" {
		if err := writeWindowIndex(o.indexPath, o.Window); err != nil {
			fmt.Fprintf(stderr, "%s: index: %v\n", cmd, err)
			return 1
		}
		return 0
	}
	switch {
	case o.Window < 0:
		return usageErr(stderr, cmd, "--window", "must not be negative")
	case o.Append < 1:
		return usageErr(stderr, cmd, "--append", "must be positive")
	case o.Batch < 1:
		return usageErr(stderr, cmd, "--batch", "must be positive")
	case o.Redeliver < 0 || o.Redeliver*o.Batch > o.Append:
		return usageErr(stderr, cmd, "--redeliver", "must be between 0 and --append / --batch")
	}
	rep := runDedupBench(context.Background(), o, stderr)
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
	} else {
		writeDedupText(stdout, rep)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

func runDedupBench(ctx context.Context, o dedupOptions, progress io.Writer) *DedupReport {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	rep := &DedupReport{Command: "tandem bench dedup", Flags: o,
		GOMAXPROCS: runtime.GOMAXPROCS(0), NumCPU: runtime.NumCPU(), Go: runtime.Version()}
	fail := func(err error) *DedupReport {
		rep.Failures = append(rep.Failures, err.Error())
		return rep
	}
	dir, err := tempDir("dedup")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if w := tempDirWarning(dir); w != "" {
		logf("warning: %s", w)
	}
	// New messageIds in every run: a kept window may hold an earlier run's.
	prefix := "n" + newRunID() + "-"

	if o.Store {
		// Baseline first, while the process is small: the same appends
		// on an empty store.
		empty, err := duckdb.Open(filepath.Join(dir, "empty.duckdb"))
		if err != nil {
			return fail(err)
		}
		rep.Empty, err = dedupAppend(ctx, empty, o, prefix)
		empty.Close()
		if err != nil {
			return fail(fmt.Errorf("baseline append: %w", err))
		}
		logf("baseline: %d events appended to an empty store at %.0f/s", rep.Empty.Events, rep.Empty.PerSec)
	}

	path := o.WindowFile
	if path == "" {
		path = filepath.Join(dir, "events.duckdb")
	}
	switch _, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		start := time.Now()
		exe, err := os.Executable()
		if err != nil {
			return fail(err)
		}
		child := exec.CommandContext(ctx, exe, "bench", "dedup", "--window", strconv.FormatInt(o.Window, 10), "--fill-only", path)
		child.Stderr = progress
		dieWithParent(child)
		if err := child.Run(); err != nil {
			return fail(fmt.Errorf("fill (child process): %w", err))
		}
		rep.FillSeconds = time.Since(start).Seconds()
	case err != nil:
		return fail(err)
	default:
		logf("window: using %s as it is (--window is not applied)", path)
	}

	if o.Store {
		if err := dedupStore(ctx, rep, path, o, prefix, logf); err != nil {
			return fail(err)
		}
	}
	if o.Node {
		if o.NodeBinary != "" {
			base := o
			base.NodeArgs = nil
			rep.Nodes = append(rep.Nodes, runDedupNode(ctx, o.NodeBinary, path, dir, base, logf))
		}
		exe, err := os.Executable()
		if err != nil {
			return fail(err)
		}
		rep.Nodes = append(rep.Nodes, runDedupNode(ctx, exe, path, dir, o, logf))
		for _, n := range rep.Nodes {
			if n.Failure != "" {
				rep.Failures = append(rep.Failures, "node "+n.Binary+": "+n.Failure)
			}
		}
	}
	return rep
}

// dedupStore runs the in-process phases on the window at path: open,
// append, redeliver; it closes the store before it returns.
func dedupStore(ctx context.Context, rep *DedupReport, path string, o dedupOptions, prefix string, logf func(string, ...any)) error {
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS()
	rep.RSSBeforeMiB = sampleMemory(0).RSSMiB
	start := time.Now()
	store, err := duckdb.OpenWithMemoryLimit(path, o.MemoryLimit)
	if err != nil {
		return err
	}
	defer store.Close()
	rep.OpenSeconds = time.Since(start).Seconds()
	st := store.DedupStats()
	rep.Fingerprints, rep.FingerprintBits, rep.FilterBytes = st.Fingerprints, st.FingerprintBits, st.Bytes
	rep.IndexHashes, rep.IndexRuns, rep.IndexBytes, rep.IndexRebuilt = st.IndexHashes, st.IndexRuns, st.IndexBytes, st.IndexRebuilt
	if st.Fingerprints > 0 {
		rep.BytesPerID = float64(st.Bytes) / float64(st.Fingerprints)
	}
	m := sampleMemory(0)
	rep.HeapMiB, rep.RSSMiB = m.HeapMiB, m.RSSMiB
	logf("open: %d fingerprints loaded in %.1fs, filter %.1f MiB (%.2f bytes/id), heap %.0f MiB, RSS %.0f MiB",
		rep.Fingerprints, rep.OpenSeconds, float64(rep.FilterBytes)/(1<<20), rep.BytesPerID, rep.HeapMiB, rep.RSSMiB)

	rep.Full, err = dedupAppend(ctx, store, o, prefix)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	logf("append: %d events at %.0f/s with the window full; %d ids checked exactly in %d queries",
		rep.Full.Events, rep.Full.PerSec, rep.Full.CheckedIDs, rep.Full.CheckQueries)

	if o.Redeliver > 0 {
		start = time.Now()
		for b := range o.Redeliver {
			n, err := store.Append(ctx, dedupBatch(o.Batch, prefix, b*o.Batch))
			if err != nil {
				return fmt.Errorf("redeliver: %w", err)
			}
			rep.RedelivN += n
		}
		rep.Redeliv = time.Since(start).Seconds() / float64(o.Redeliver)
		logf("redeliver: %.3fs per batch of %d duplicates, %d stored again", rep.Redeliv, o.Batch, rep.RedelivN)
	}
	rep.RSSAfterMiB = sampleMemory(0).RSSMiB
	rep.PeakRSSMiB, _ = peakRSSMB()
	return store.Close()
}

// dedupAppend appends o.Append new events (messageIds prefix+counter) in
// batches and times it.
func dedupAppend(ctx context.Context, s *duckdb.Store, o dedupOptions, prefix string) (DedupAppend, error) {
	before := s.DedupStats()
	ph := DedupAppend{Events: o.Append}
	cpu0, _ := selfCPU()
	start := time.Now()
	for i := 0; i < o.Append; i += o.Batch {
		n, err := s.Append(ctx, dedupBatch(min(o.Batch, o.Append-i), prefix, i))
		if err != nil {
			return ph, err
		}
		ph.Stored += n
	}
	ph.Seconds = time.Since(start).Seconds()
	ph.PerSec = float64(ph.Stored) / ph.Seconds
	after := s.DedupStats()
	ph.CheckedIDs = after.CheckedIDs - before.CheckedIDs
	ph.CheckQueries = after.CheckQueries - before.CheckQueries
	ph.FilterHits = after.FilterHits - before.FilterHits
	ph.IndexReads = after.IndexReads - before.IndexReads
	if ph.Stored > 0 {
		ph.CPUMicros = float64(cpuNow(cpu0)) / float64(time.Microsecond) / float64(ph.Stored)
	}
	return ph, nil
}

var dedupBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// dedupBatch makes n small track events with messageIds prefix+(from..).
func dedupBatch(n int, prefix string, from int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		k := from + i
		ts := dedupBase.Add(time.Duration(k) * time.Millisecond)
		evs[i] = event.Event{SourceID: "bench", MessageID: fmt.Sprintf("%s%d", prefix, k), Type: "track",
			Name: "Viewed", UserID: fmt.Sprintf("u%d", k%100_000), Timestamp: ts, ReceivedAt: ts,
			Raw: []byte(`{"type":"track","event":"Viewed"}`)}
	}
	return evs
}

// fillFile creates the store at path and fills it with n events.
func fillFile(ctx context.Context, path string, n int64, logf func(string, ...any)) error {
	store, err := duckdb.Open(path)
	if err != nil {
		return err
	}
	if err := fillWindow(ctx, store, n, logf); err != nil {
		store.Close()
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	start := time.Now()
	if err := writeWindowIndex(path, n); err != nil {
		return err
	}
	logf("fill: key index of %d events written in %.1fs", n, time.Since(start).Seconds())
	return nil
}

// writeWindowIndex writes the dedup key index of a window of n events
// filled by fillWindow, closed, in one pass from their keys (their
// messageIds are known), as the node's first open would have rebuilt it
// from the table (25 scans of key_hash at 100 M: ten minutes).
func writeWindowIndex(path string, n int64) error {
	return duckdb.WriteKeyIndex(path, int(n), func(yield func(string, string) bool) {
		var b []byte
		for i := range n {
			b = strconv.AppendInt(append(b[:0], 'w'), i, 10)
			if !yield("bench", string(b)) {
				return
			}
		}
	})
}

// fillWindow inserts n events in SQL, a million per statement, with the
// real key_hash (see the schema), so that none of them collides exactly
// with the appended ones (prefix "w" against "n").
func fillWindow(ctx context.Context, s *duckdb.Store, n int64, logf func(string, ...any)) error {
	db := s.DB()
	if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL threads = %d", runtime.NumCPU())); err != nil {
		return err
	}
	const chunk = 1_000_000
	for lo := int64(0); lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		q := fmt.Sprintf(`INSERT INTO events (source_id, message_id, type, name, user_id, timestamp, received_at, raw, key_hash)
			SELECT 'bench', mid, 'track', 'Viewed', 'u' || (i %% 100000), ts, ts, '{"type":"track","event":"Viewed"}',
				('0x' || left(sha256('5:bench' || mid), 16))::UBIGINT
			FROM (SELECT i, 'w' || i AS mid, TIMESTAMPTZ '%s' + to_microseconds(i * 1000) AS ts FROM range(%d, %d) t(i))`,
			dedupBase.Format(time.RFC3339), lo, hi)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
		logf("fill: %d/%d events", hi, n)
	}
	_, err := db.ExecContext(ctx, "CHECKPOINT")
	return err
}

func writeDedupText(w io.Writer, r *DedupReport) {
	fmt.Fprintf(w, "tandem bench dedup --window %d --append %d --batch %d --redeliver %d", r.Flags.Window, r.Flags.Append, r.Flags.Batch, r.Flags.Redeliver)
	if r.Flags.MemoryLimit != "" {
		fmt.Fprintf(w, " --duckdb-memory-limit %s", r.Flags.MemoryLimit)
	}
	fmt.Fprintln(w)
	if r.FillSeconds == 0 && r.Flags.WindowFile != "" {
		fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s; window: %s as it was (--window not applied)\n\n", r.GOMAXPROCS, r.NumCPU, r.Go, r.Flags.WindowFile)
	} else {
		fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s; window filled in %.1fs (SQL, not Append)\n\n", r.GOMAXPROCS, r.NumCPU, r.Go, r.FillSeconds)
	}
	if r.Flags.Store {
		fmt.Fprintf(w, "dedup filter   %d fingerprints of %d bits, %.1f MiB, %.2f bytes/id; loaded in %.1fs\n",
			r.Fingerprints, r.FingerprintBits, float64(r.FilterBytes)/(1<<20), r.BytesPerID, r.OpenSeconds)
		if r.IndexHashes > 0 {
			how := "read from its files"
			if r.IndexRebuilt {
				how = "rebuilt from the table at the open"
			}
			fmt.Fprintf(w, "key index      %d hashes in %d runs on disk, %.1f MiB in memory (in the filter's figure), %s\n",
				r.IndexHashes, r.IndexRuns, float64(r.IndexBytes)/(1<<20), how)
		}
		fmt.Fprintf(w, "memory         process RSS %.0f MiB before the open (DuckDB library, baseline phase)\n", r.RSSBeforeMiB)
		fmt.Fprintf(w, "               Go heap %.0f MiB, process RSS %.0f MiB after open, %.0f MiB after appends, peak %.0f MiB from the open on\n", r.HeapMiB, r.RSSMiB, r.RSSAfterMiB, r.PeakRSSMiB)
		row := func(name string, a DedupAppend) {
			fmt.Fprintf(w, "%-14s %9.0f events/s, %.1f CPU µs/event  (%d stored in %.1fs; %d filter hits, %d index blocks read; %d ids checked against the table in %d queries)\n",
				name, a.PerSec, a.CPUMicros, a.Stored, a.Seconds, a.FilterHits, a.IndexReads, a.CheckedIDs, a.CheckQueries)
		}
		row("append full", r.Full)
		row("append empty", r.Empty)
		if r.Flags.Redeliver > 0 {
			fmt.Fprintf(w, "redeliver      %.3fs per batch of %d duplicates (%d stored again)\n", r.Redeliv, r.Flags.Batch, r.RedelivN)
		}
	}
	for _, n := range r.Nodes {
		writeDedupNode(w, n)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

// cpuNow returns this process's CPU time since cpu0 (0 if unknown).
func cpuNow(cpu0 time.Duration) time.Duration {
	c, err := selfCPU()
	if err != nil || cpu0 == 0 {
		return 0
	}
	return c - cpu0
}
