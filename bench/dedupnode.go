package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DedupNode is what the node phase of `tandem bench dedup` measured on one
// `tandem serve` child whose event store holds the window.
type DedupNode struct {
	Binary      string  `json:"binary"` // the executable of the child
	OpenSeconds float64 `json:"openSeconds"`
	// FilterMiB is tandem_events_dedup_filter_bytes (absent before the
	// metric existed: 0).
	FilterMiB float64 `json:"filterMiB"`
	// After the open (ready), and after the appends and the redelivery.
	Open  NodeMemory `json:"open"`
	After NodeMemory `json:"after"`
	// PeakRSSMiB is the child's VmHWM after the redelivery: the open
	// included. StopPeakRSSMiB is its largest RSS over its whole life,
	// the stop included (the event store's final checkpoint, say); 0
	// where unknown.
	PeakRSSMiB     float64 `json:"peakRssMiB"`
	StopPeakRSSMiB float64 `json:"stopPeakRssMiB"`

	Events       int64   `json:"events"`       // appended through /v1/batch
	Seconds      float64 `json:"seconds"`      // from the first request until all were stored
	PerSec       float64 `json:"eventsPerSec"` // stored per second
	CPUMicros    float64 `json:"cpuMicrosPerEvent"`
	Redelivered  int64   `json:"redelivered"` // events sent again
	RedelivSecs  float64 `json:"redeliverSeconds"`
	StoredAgain  float64 `json:"storedAgain"` // must be 0
	Duplicates   float64 `json:"duplicates"`  // tandem_pipeline_events_duplicate_total growth
	Failure      string  `json:"failure,omitempty"`
	LoadAverages string  `json:"loadAverage"`
}

// NodeMemory is the child's memory at one moment: /proc/PID/status and
// smaps_rollup, and the Go runtime's figures from /metrics.
type NodeMemory struct {
	RSSMiB    float64 `json:"rssMiB"`
	AnonMiB   float64 `json:"anonMiB"` // RssAnon: heaps (Go's and C's), stacks
	FileMiB   float64 `json:"fileMiB"` // RssFile: the executable's and libraries' pages
	GoHeapMiB float64 `json:"goHeapMiB"`
	GoSysMiB  float64 `json:"goSysMiB"`  // all memory the Go runtime obtained
	GoFreeMiB float64 `json:"goFreeMiB"` // heap idle, not returned to the OS
	NotGoMiB  float64 `json:"notGoMiB"`  // RssAnon minus what Go holds: DuckDB, SQLite, cgo
	FilterMiB float64 `json:"filterMiB"` // tandem_events_dedup_filter_bytes
	// DuckLimitMiB is tandem_events_memory_limit_bytes (absent before it
	// existed: 0).
	DuckLimitMiB float64 `json:"duckLimitMiB,omitempty"`
	GCPercent    float64 `json:"gcPercent"`  // not exported: 0
	StoredRows   float64 `json:"storedRows"` // tandem_pipeline_events_stored_total
}

// procStatus reads fields of /proc/pid/status in MiB.
func procStatus(pid int) map[string]float64 {
	out := map[string]float64{}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(strings.TrimSpace(v), "kB") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		if err == nil {
			out[k] = kb / 1024
		}
	}
	return out
}

func (s *server) nodeMemory(ctx context.Context, hc *http.Client) NodeMemory {
	st := procStatus(s.proc.cmd.Process.Pid)
	m := NodeMemory{RSSMiB: st["VmRSS"], AnonMiB: st["RssAnon"], FileMiB: st["RssFile"]}
	if mt, err := s.metrics(ctx, hc); err == nil {
		const mib = 1 << 20
		m.GoHeapMiB = mt["go_memstats_heap_inuse_bytes"] / mib
		m.GoSysMiB = mt["go_memstats_sys_bytes"] / mib
		m.GoFreeMiB = (mt["go_memstats_heap_idle_bytes"] - mt["go_memstats_heap_released_bytes"]) / mib
		m.FilterMiB = mt["tandem_events_dedup_filter_bytes"] / mib
		m.DuckLimitMiB = mt["tandem_events_memory_limit_bytes"] / mib
		m.StoredRows = mt["tandem_pipeline_events_stored_total"]
		// What Go holds resident is at most its sys minus what it released.
		m.NotGoMiB = m.AnonMiB - (mt["go_memstats_sys_bytes"]-mt["go_memstats_heap_released_bytes"])/mib
	}
	return m
}

// runDedupNode starts exe's `tandem serve` on a fresh data directory whose
// events.duckdb is a hard link to window (so the node's dedup filter holds
// the window, and what it appends stays in the file for the next run),
// appends o.Append new events through /v1/batch, sends o.Redeliver × o.Batch
// of them again, and samples its memory.
func runDedupNode(ctx context.Context, exe, window, workDir string, o dedupOptions, logf func(string, ...any)) (r DedupNode) {
	r = DedupNode{Binary: exe, LoadAverages: loadAverage()}
	dir, err := os.MkdirTemp(workDir, "node-")
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	for _, suffix := range []string{"", ".wal"} {
		if _, err := os.Stat(window + suffix); err == nil {
			if err := os.Link(window+suffix, filepath.Join(dir, "events.duckdb"+suffix)); err != nil {
				r.Failure = fmt.Sprintf("link the window into the node's data directory: %v", err)
				return r
			}
		}
	}
	// The window's dedup key index, if an earlier phase left one beside
	// it: linked too, so that the node reads it instead of rebuilding it
	// (a build without the index ignores it).
	if ents, err := os.ReadDir(window + ".keys"); err == nil {
		keys := filepath.Join(dir, "events.duckdb.keys")
		if err := os.Mkdir(keys, 0o755); err != nil {
			r.Failure = err.Error()
			return r
		}
		for _, e := range ents {
			if err := os.Link(filepath.Join(window+".keys", e.Name()), filepath.Join(keys, e.Name())); err != nil {
				r.Failure = fmt.Sprintf("link the window's key index into the node's data directory: %v", err)
				return r
			}
		}
	}
	addr, err := freeAddr()
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	token := "bench-" + newRunID() + newRunID()
	args := append([]string{"serve", "--data-dir", dir, "--addr", addr, "--source-rate-limit", "0"}, o.NodeArgs...)
	logPath := filepath.Join(workDir, filepath.Base(dir)+".log")
	start := time.Now()
	c, err := startChildExe(exe, "tandem serve", addr, logPath, childEnv("TANDEM_ADMIN_TOKEN="+token), args...)
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	defer func() {
		desc := c.stop(2 * time.Minute)
		r.StopPeakRSSMiB = exitPeakRSSMiB(c.cmd.ProcessState)
		if desc != "exit 0" {
			logf("node: %s", desc)
			return
		}
		// The node's key index now covers the window with the node's
		// appends: it replaces the window's, so that the next run reads
		// it instead of building it again (minutes at 100 million).
		if err := keepKeyIndex(filepath.Join(dir, "events.duckdb.keys"), window+".keys"); err != nil {
			logf("node: keep the key index beside the window: %v", err)
		}
		// The same for the write-ahead log: a window left with one (its
		// fill interrupted) was linked in, replayed and checkpointed into
		// the shared file by the node, which then removed its own link;
		// the window's would be replayed again by the next run and fail.
		if err := keepWAL(filepath.Join(dir, "events.duckdb.wal"), window+".wal"); err != nil {
			logf("node: keep the write-ahead log beside the window: %v", err)
		}
	}()
	if err := c.waitReady(ctx, 30*time.Minute); err != nil {
		r.Failure = err.Error()
		return r
	}
	r.OpenSeconds = time.Since(start).Seconds()
	srv := &server{base: c.base, token: token, proc: c}
	hc := newHTTPClient(o.Clients)
	time.Sleep(2 * time.Second) // let the pacer and the scavenger see the open's end
	r.Open = srv.nodeMemory(ctx, hc)
	r.FilterMiB = r.Open.FilterMiB
	logf("node %s: ready in %.1fs; RSS %.0f MiB (anon %.0f, file %.0f), Go heap %.0f MiB, filter %.0f MiB",
		filepath.Base(exe), r.OpenSeconds, r.Open.RSSMiB, r.Open.AnonMiB, r.Open.FileMiB, r.Open.GoHeapMiB, r.Open.FilterMiB)
	if err := srv.createSource(ctx); err != nil {
		r.Failure = err.Error()
		return r
	}

	runID := newRunID()
	url := srv.base + "/v1/batch"
	stored0 := r.Open.StoredRows
	cpu0, _ := c.cpu()
	start = time.Now()
	res, err := runLoad(ctx, hc, newGenerator(runID, o.Clients, 100, time.Now()),
		loadOptions{URL: url, WriteKey: srv.writeKey, Events: int64(o.Append), Phase: "node append", Progress: nil})
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	if res.Events < int64(o.Append) {
		r.Failure = fmt.Sprintf("append: %d of %d events accepted (%s)", res.Events, o.Append, res.FirstError)
		return r
	}
	r.Events = res.Events
	mt, err := waitMetric(ctx, srv, hc, "tandem_pipeline_events_stored_total", stored0+float64(r.Events), 30*time.Minute)
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	r.Seconds = time.Since(start).Seconds()
	r.PerSec = float64(r.Events) / r.Seconds
	if cpu1, err := c.cpu(); err == nil {
		r.CPUMicros = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(r.Events)
	}
	logf("node %s: %d events stored in %.1fs (%.0f/s)", filepath.Base(exe), r.Events, r.Seconds, r.PerSec)

	if o.Redeliver > 0 {
		stored1 := mt["tandem_pipeline_events_stored_total"]
		dup0 := mt["tandem_pipeline_events_duplicate_total"]
		n := int64(o.Redeliver * o.Batch)
		start = time.Now()
		// The same run id and counters: the same messageIds again.
		res, err := runLoad(ctx, hc, newGenerator(runID, o.Clients, 100, time.Now()),
			loadOptions{URL: url, WriteKey: srv.writeKey, Events: n})
		if err != nil {
			r.Failure = err.Error()
			return r
		}
		r.Redelivered = res.Events
		mt, err = waitMetric(ctx, srv, hc, "tandem_pipeline_events_duplicate_total", dup0+float64(res.Events), 30*time.Minute)
		if err != nil {
			r.Failure = err.Error()
			return r
		}
		r.RedelivSecs = time.Since(start).Seconds()
		r.Duplicates = mt["tandem_pipeline_events_duplicate_total"] - dup0
		r.StoredAgain = mt["tandem_pipeline_events_stored_total"] - stored1
		logf("node %s: %d redelivered in %.1fs, %.0f duplicates, %.0f stored again", filepath.Base(exe), r.Redelivered, r.RedelivSecs, r.Duplicates, r.StoredAgain)
	}
	time.Sleep(2 * time.Second)
	r.After = srv.nodeMemory(ctx, hc)
	r.PeakRSSMiB = procStatus(c.cmd.Process.Pid)["VmHWM"]
	return r
}

// keepWAL makes dst what the node left at wal: the same file (a hard
// link) if the node stopped with a write-ahead log, none if it did not.
func keepWAL(wal, dst string) error {
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, err := os.Stat(wal); err != nil {
		return nil
	}
	return os.Link(wal, dst)
}

// keepKeyIndex moves a node's dedup key index dir to dst, replacing what
// is there; without one (a build without the index) it leaves dst alone.
func keepKeyIndex(dir, dst string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	return os.Rename(dir, dst)
}

// waitMetric polls /metrics until name reaches at least want.
func waitMetric(ctx context.Context, s *server, hc *http.Client, name string, want float64, timeout time.Duration) (map[string]float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		mt, err := s.metrics(ctx, hc)
		if err == nil && mt[name] >= want {
			return mt, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not reach %.0f within %s (last %.0f, %v)", name, want, timeout, mt[name], err)
		}
		if s.proc.exited() {
			return nil, s.proc.failure(fmt.Errorf("node exited (%s)", s.proc.exitDesc()))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func writeDedupNode(w io.Writer, n DedupNode) {
	fmt.Fprintf(w, "node %s (load average %s)\n", n.Binary, n.LoadAverages)
	if n.Failure != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", n.Failure)
	}
	fmt.Fprintf(w, "  ready in %.1fs, filter %.1f MiB, peak RSS %.0f MiB (open included), %.0f MiB with the stop\n", n.OpenSeconds, n.FilterMiB, n.PeakRSSMiB, n.StopPeakRSSMiB)
	mem := func(name string, m NodeMemory) {
		fmt.Fprintf(w, "  %-13s RSS %4.0f MiB = anon %4.0f + file %3.0f; Go heap %4.0f MiB, Go sys %4.0f, Go free-not-released %3.0f; non-Go anon (DuckDB, SQLite) %4.0f",
			name, m.RSSMiB, m.AnonMiB, m.FileMiB, m.GoHeapMiB, m.GoSysMiB, m.GoFreeMiB, m.NotGoMiB)
		if m.DuckLimitMiB > 0 {
			fmt.Fprintf(w, "; DuckDB limit %.0f MiB", m.DuckLimitMiB)
		}
		fmt.Fprintln(w)
	}
	mem("after open", n.Open)
	mem("after appends", n.After)
	fmt.Fprintf(w, "  append        %9.0f events/s stored (%d in %.1fs, from the first request to the last stored), %.1f CPU µs/event\n",
		n.PerSec, n.Events, n.Seconds, n.CPUMicros)
	if n.Redelivered > 0 {
		fmt.Fprintf(w, "  redeliver     %d events again in %.1fs: %.0f duplicates, %.0f stored again\n", n.Redelivered, n.RedelivSecs, n.Duplicates, n.StoredAgain)
	}
}
