package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Report is everything one `tandem bench ingest` measured. --json prints
// it as is.
type Report struct {
	Command    string          `json:"command"`
	RunID      string          `json:"runId"`
	Flags      reportFlags     `json:"flags"`
	GOMAXPROCS int             `json:"gomaxprocs"`
	NumCPU     int             `json:"numCpu"`
	Go         string          `json:"go"`
	TempDir    string          `json:"tempDir"`
	Phases     []*PhaseResult  `json:"phases"`
	Ratios     Ratios          `json:"ratios"`
	Pipeline   *PipelineResult `json:"pipeline,omitempty"`
	Drain      *DrainResult    `json:"drain,omitempty"`
	Warnings   []string        `json:"warnings,omitempty"`
	Failures   []string        `json:"failures,omitempty"`
}

type reportFlags struct {
	options
	Duration string `json:"duration"`
	Command  string `json:"commandLine"`
}

// PhaseResult is one timed phase: tandem, sink or log.
type PhaseResult struct {
	Name           string  `json:"name"`
	Events         int64   `json:"events"`   // events accepted
	Requests       int64   `json:"requests"` // requests (appends for "log") made
	Seconds        float64 `json:"seconds"`
	EventsPerSec   float64 `json:"eventsPerSec"`
	RequestsPerSec float64 `json:"requestsPerSec"`
	P50Ms          float64 `json:"p50Ms"`
	P99Ms          float64 `json:"p99Ms"`
	// ServerCPUCores is the CPU the server used over the phase divided by
	// its wall time; for "log" (InProcess) it is the whole bench process.
	ServerCPUCores  *float64         `json:"serverCpuCores"`
	LoadgenCPUCores *float64         `json:"loadgenCpuCores"`
	InProcess       bool             `json:"inProcess,omitempty"`
	Errors          map[string]int64 `json:"errors,omitempty"` // by HTTP status, "transport" or "append"
	FirstError      string           `json:"firstError,omitempty"`
	ServerExit      string           `json:"serverExit,omitempty"`
	Note            string           `json:"note,omitempty"`
}

// Ratios compare tandem's events/s with the baselines'.
type Ratios struct {
	TandemOverSink *float64 `json:"tandemOverSink"`
	TandemOverLog  *float64 `json:"tandemOverLog"`
	// The collection-only node (--pipeline=false) against the same baselines.
	CollectOverSink *float64 `json:"collectOverSink,omitempty"`
	CollectOverLog  *float64 `json:"collectOverLog,omitempty"`
	// The sink's server CPU per event over the collection-only node's: what
	// the events/s ratio would be if both were bound by CPU alone. On a
	// machine shared with other work a phase's events/s follow the CPU it
	// happened to get; its CPU per event much less so.
	CollectOverSinkByCPU *float64 `json:"collectOverSinkByCpu,omitempty"`
}

// cpuPerEvent is a phase's server CPU microseconds per accepted event.
func cpuPerEvent(p *PhaseResult) *float64 {
	if p == nil || p.ServerCPUCores == nil || p.EventsPerSec == 0 {
		return nil
	}
	return ptr(*p.ServerCPUCores / p.EventsPerSec * 1e6)
}

// PipelineResult is the pipeline's progress during the tandem phase, from
// /metrics sampled every second.
type PipelineResult struct {
	Samples      int     `json:"samples"`
	StoredEvents float64 `json:"storedEvents"`
	Seconds      float64 `json:"seconds"`
	StoredPerSec float64 `json:"storedPerSec"`
	LagStart     float64 `json:"lagStartRecords"`
	LagEnd       float64 `json:"lagEndRecords"`
	LagMax       float64 `json:"lagMaxRecords"`
	Growing      bool    `json:"lagGrowing"`
	Error        string  `json:"error,omitempty"`
}

// DrainResult is the drain phase.
type DrainResult struct {
	Events             int64            `json:"events"`
	IngestSeconds      float64          `json:"ingestSeconds"`
	IngestEventsPerSec float64          `json:"ingestEventsPerSec"`
	IngestErrors       map[string]int64 `json:"ingestErrors,omitempty"`
	StartSeconds       float64          `json:"startSeconds"`  // restart until /readyz
	StoredAtReady      float64          `json:"storedAtReady"` // events already stored then
	StoredSeconds      float64          `json:"storedSeconds"` // ready until every event stored
	Seconds            float64          `json:"seconds"`       // ready until stored and lag 0
	EventsPerSec       float64          `json:"eventsPerSec"`
	ServerCPUCores     *float64         `json:"serverCpuCores"`
	ServerExits        []string         `json:"serverExits"`
}

func ratios(phases []*PhaseResult) Ratios {
	by := map[string]*PhaseResult{}
	for _, p := range phases {
		by[p.Name] = p
	}
	div := func(a, b string) *float64 {
		pa, pb := by[a], by[b]
		if pa == nil || pb == nil || pb.EventsPerSec == 0 {
			return nil
		}
		return ptr(pa.EventsPerSec / pb.EventsPerSec)
	}
	r := Ratios{TandemOverSink: div("tandem", "sink"), TandemOverLog: div("tandem", "log"),
		CollectOverSink: div("collect-only", "sink"), CollectOverLog: div("collect-only", "log")}
	if c, s := cpuPerEvent(by["collect-only"]), cpuPerEvent(by["sink"]); c != nil && s != nil && *c > 0 {
		r.CollectOverSinkByCPU = ptr(*s / *c)
	}
	return r
}

func writeJSON(w io.Writer, rep any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText prints the report for people.
func writeText(w io.Writer, rep *Report) {
	o := rep.Flags.options
	fmt.Fprintf(w, "%s: %d clients × %d events per request, %s per phase (run %s)\n",
		rep.Command, o.Clients, o.Batch, o.Duration, rep.RunID)
	fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s, temp dir %s\n\n", rep.GOMAXPROCS, rep.NumCPU, rep.Go, rep.TempDir)

	if len(rep.Phases) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "phase \t events/s \t req/s \t p50 ms \t p99 ms \t server CPU cores \t server CPU µs/event \t loadgen CPU cores \t errors \t")
		for _, p := range rep.Phases {
			server := cores(p.ServerCPUCores)
			loadgen := cores(p.LoadgenCPUCores)
			if p.InProcess {
				server += " (in-process)"
				loadgen = "-"
			}
			perEvent := "-"
			if c := cpuPerEvent(p); c != nil {
				perEvent = fmt.Sprintf("%.2f", *c)
			}
			fmt.Fprintf(tw, "%s \t %s \t %s \t %.1f \t %.1f \t %s \t %s \t %s \t %s \t\n", p.Name,
				group(p.EventsPerSec), group(p.RequestsPerSec), p.P50Ms, p.P99Ms, server, perEvent, loadgen, errorList(p.Errors))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}

	if r := rep.Ratios.TandemOverSink; r != nil {
		fmt.Fprintf(w, "tandem ÷ sink:         %.2f× events/s\n", *r)
	}
	if r := rep.Ratios.TandemOverLog; r != nil {
		fmt.Fprintf(w, "tandem ÷ log baseline: %.2f× events/s\n", *r)
	}
	if r := rep.Ratios.CollectOverSink; r != nil {
		fmt.Fprintf(w, "collect-only ÷ sink:   %.2f× events/s\n", *r)
	}
	if r := rep.Ratios.CollectOverLog; r != nil {
		fmt.Fprintf(w, "collect-only ÷ log:    %.2f× events/s\n", *r)
	}
	if r := rep.Ratios.CollectOverSinkByCPU; r != nil {
		fmt.Fprintf(w, "collect-only ÷ sink:   %.2f× by server CPU per event (sink's µs/event over collect-only's)\n", *r)
	}
	if p := rep.Pipeline; p != nil {
		if p.Samples >= 2 {
			trend := "keeping up with collection"
			if p.Growing {
				trend = "falling behind collection: lag growing"
			}
			fmt.Fprintf(w, "pipeline during ingest: %s events stored/s; lag %s → %s records (%s, max %s)\n",
				group(p.StoredPerSec), lag(p.LagStart), lag(p.LagEnd), trend, lag(p.LagMax))
		}
		if p.Error != "" {
			fmt.Fprintf(w, "pipeline during ingest: %s\n", p.Error)
		}
	}
	if d := rep.Drain; d != nil {
		fmt.Fprintf(w, "drain backlog: %s events ingested with --pipeline=false in %.2f s (%s events/s)\n",
			group(float64(d.Events)), d.IngestSeconds, group(d.IngestEventsPerSec))
		if d.Seconds > 0 {
			fmt.Fprintf(w, "drain: %s events in %.2f s = %s events/s, %s server CPU cores (all stored after %.2f s; restart to ready %.2f s, %s stored by then)\n",
				group(float64(d.Events)), d.Seconds, group(d.EventsPerSec), cores(d.ServerCPUCores),
				d.StoredSeconds, d.StartSeconds, group(d.StoredAtReady))
		}
	}
	var exits []string
	for _, p := range rep.Phases {
		if p.ServerExit != "" {
			exits = append(exits, p.Name+" "+p.ServerExit)
		}
	}
	if rep.Drain != nil {
		exits = append(exits, rep.Drain.ServerExits...)
	}
	if len(exits) > 0 {
		fmt.Fprintf(w, "children on SIGTERM: %s\n", strings.Join(exits, "; "))
	}
	for _, p := range rep.Phases {
		if p.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", p.Name, p.Note)
		}
		if p.FirstError != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", p.Name, p.FirstError)
		}
	}
	fmt.Fprintf(w, "flags: %s\n", rep.Flags.Command)
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
	for _, s := range rep.Failures {
		fmt.Fprintf(w, "FAILED %s\n", s)
	}
}

func cores(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64)
}

func lag(v float64) string {
	if v < 0 {
		return "unknown"
	}
	return group(v)
}

func errorList(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// group formats v for reading: whole numbers with thousands separators,
// and one decimal for fractions under 100.
func group(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	if math.Abs(v) < 100 && v != math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(math.Abs(v))), 10)
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
