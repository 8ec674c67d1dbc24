package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"tandem/event"
)

const e2eUsage = `Usage: tandem bench e2e [flags]

Finds the sustained end-to-end rate of a whole node: the highest offered
rate at which a "tandem serve" child with everything on (collection,
identity resolution, event store) keeps its pipeline lag flat.

  baselines  in the same run, as fast as answered, for --baseline-duration:
             collect-only (a --pipeline=false child) and log (the bare
             embedded event log, in-process), the same bodies as the steps
  steps      each step starts a fresh child and offers a steady rate
             (open-loop: each client sends on its own schedule and, when a
             slow answer put it behind, catches up at once) for
             --warmup and then --duration, the measured interval. The step
             is sustained ("flat") when at least 95% of the offered events
             were accepted and the pipeline's lag (tandem_pipeline_lag_seconds,
             sampled every second) grew by at most --lag-slack over the
             measured interval, by the least-squares line through its
             floor (its minimum over 12-s windows: the lag saw-tooths by
             seconds as row groups of staged events commit, and the
             teeth's bottoms are the backlog; a line through every sample,
             or the first and last seconds, would follow the teeth).
             The search starts
             at a quarter of the ceiling (collect-only's rate, or --max-rate
             if lower) and bisects geometrically between the highest flat
             and the lowest unflat rate; after an unflat step it tries 95% of
             the rate the pipeline stored during it, when that lies between.
             It stops when the two are within 10% or after --max-steps.
  markers    during the measured interval a marker event (a track with a
             unique userId and event "E2E Marker") is sent every
             --marker-interval; after its 200 the bench polls
             GET /api/v1/profiles/lookup for its userId every 100 ms, and
             runs POST /api/v1/analytics/funnel (broken down by marker)
             whenever the node's stored counter
             (tandem_pipeline_events_stored_total, counted right after each
             event-store commit), looked at every 100 ms, moved since the
             last funnel (and at least every 5 s), until both show it: an
             event reaches a funnel only by a commit, and the funnel costs
             the node far more than the counter. The delay is from the 200
             to the answer that showed it in both (so up to a poll
             interval late).

The load (--identifiers, --events-per-profile): web visitors who arrive
anonymous (page views with an anonymousId), identify (anonymousId + userId,
and with 3 identifiers an e-mail trait) and go on with tracks carrying both
ids; every request brings new people.

It reports the sustained events/s, the marker delays (p50/p99), the child's
CPU (from /proc) and RSS (process_resident_memory_bytes) at that rate, every
step, and the baselines. It never fails on the figures; exit status 1 means
a phase could not run.

Flags:
`

// e2eOptions are the flags of `tandem bench e2e`.
type e2eOptions struct {
	Clients          int           `json:"clients"`
	Batch            int           `json:"batch"`
	Duration         time.Duration `json:"-"`
	Warmup           time.Duration `json:"-"`
	BaselineDuration time.Duration `json:"-"`
	EventsPerProfile int           `json:"eventsPerProfile"`
	Identifiers      int           `json:"identifiers"`
	MinRate          float64       `json:"minRate"`
	MaxRate          float64       `json:"maxRate,omitempty"`
	MaxSteps         int           `json:"maxSteps"`
	LagSlack         time.Duration `json:"-"`
	MarkerInterval   time.Duration `json:"-"`
	SkipBaselines    bool          `json:"skipBaselines"`
	JSON             bool          `json:"json"`
}

func (o e2eOptions) String() string {
	s := fmt.Sprintf("--clients %d --batch %d --duration %s --warmup %s --events-per-profile %d --identifiers %d --min-rate %.0f",
		o.Clients, o.Batch, o.Duration, o.Warmup, o.EventsPerProfile, o.Identifiers, o.MinRate)
	if o.MaxRate > 0 {
		s += fmt.Sprintf(" --max-rate %.0f", o.MaxRate)
	}
	s += fmt.Sprintf(" --max-steps %d --lag-slack %s --marker-interval %s", o.MaxSteps, o.LagSlack, o.MarkerInterval)
	if o.SkipBaselines {
		s += " --skip-baselines"
	} else {
		s += fmt.Sprintf(" --baseline-duration %s", o.BaselineDuration)
	}
	if o.JSON {
		s += " --json"
	}
	return s
}

func e2eMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench e2e"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o e2eOptions
	fs.IntVar(&o.Clients, "clients", 16, "concurrent HTTP clients (goroutines, each with a keep-alive connection)")
	fs.IntVar(&o.Batch, "batch", 100, "events per /v1/batch request")
	fs.DurationVar(&o.Duration, "duration", 60*time.Second, "measured interval of each step, over which the lag must stay flat")
	fs.DurationVar(&o.Warmup, "warmup", 10*time.Second, "load offered before each step's measured interval, not judged")
	fs.DurationVar(&o.BaselineDuration, "baseline-duration", 10*time.Second, "how long the collect-only and log baselines run")
	fs.IntVar(&o.EventsPerProfile, "events-per-profile", 10, "events of each person (a new person for every this many events)")
	fs.IntVar(&o.Identifiers, "identifiers", 3, "identifiers per person: 1 userId only; 2 anonymousId then userId; 3 also an e-mail address")
	fs.Float64Var(&o.MinRate, "min-rate", 1000, "lowest offered rate in events/s the search tries")
	fs.Float64Var(&o.MaxRate, "max-rate", 0, "highest offered rate in events/s the search tries (0: collect-only's rate; required with --skip-baselines)")
	fs.IntVar(&o.MaxSteps, "max-steps", 6, "most steps (offered rates) the search runs")
	fs.DurationVar(&o.LagSlack, "lag-slack", 2*time.Second, "how much the pipeline lag may grow over the measured interval for the rate to count as sustained")
	fs.DurationVar(&o.MarkerInterval, "marker-interval", 500*time.Millisecond, "time between marker events during the measured interval")
	fs.BoolVar(&o.SkipBaselines, "skip-baselines", false, "skip the collect-only and log baselines (then --max-rate is the ceiling)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&profileDir, "cpuprofile", "", "directory to write a CPU profile of each child process to (collection-only-server.pprof, tandem-server-step-N.pprof for step N's whole run), for go tool pprof")
	if code, ok := parseFlags(fs, args, e2eUsage, stdout, stderr); !ok {
		return code
	}
	switch {
	case o.Clients < 1 || o.Clients > maxClients:
		return usageErr(stderr, cmd, "--clients", fmt.Sprintf("must be between 1 and %d", maxClients))
	case o.Batch < 1 || o.Batch > event.MaxBatchEvents:
		return usageErr(stderr, cmd, "--batch", fmt.Sprintf("must be between 1 and %d", event.MaxBatchEvents))
	case o.Duration < time.Second:
		return usageErr(stderr, cmd, "--duration", "must be at least 1s")
	case o.Warmup < 0:
		return usageErr(stderr, cmd, "--warmup", "must not be negative")
	case o.BaselineDuration <= 0 && !o.SkipBaselines:
		return usageErr(stderr, cmd, "--baseline-duration", "must be positive")
	case o.EventsPerProfile < 1:
		return usageErr(stderr, cmd, "--events-per-profile", "must be positive")
	case o.Identifiers < 1 || o.Identifiers > 3:
		return usageErr(stderr, cmd, "--identifiers", "must be 1, 2 or 3")
	case o.MinRate <= 0:
		return usageErr(stderr, cmd, "--min-rate", "must be positive")
	case o.MaxRate < 0 || (o.MaxRate > 0 && o.MaxRate < o.MinRate):
		return usageErr(stderr, cmd, "--max-rate", "must not be below --min-rate")
	case o.SkipBaselines && o.MaxRate == 0:
		return usageErr(stderr, cmd, "--max-rate", "is required with --skip-baselines")
	case o.MaxSteps < 1:
		return usageErr(stderr, cmd, "--max-steps", "must be positive")
	case o.LagSlack < 0:
		return usageErr(stderr, cmd, "--lag-slack", "must not be negative")
	case o.MarkerInterval < 10*time.Millisecond:
		return usageErr(stderr, cmd, "--marker-interval", "must be at least 10ms")
	}
	gen := newE2EGenerator(newRunID(), o.Clients, o.Batch, o.EventsPerProfile, o.Identifiers, time.Now())
	if n := len(gen.templates[0].patch.b); n > event.MaxRequestBytes {
		return usageErr(stderr, cmd, "--batch", fmt.Sprintf("%d events make a %d-byte body, over the %d-byte request limit", o.Batch, n, event.MaxRequestBytes))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	e := &e2eBencher{opts: o, gen: gen, progress: stderr}
	rep := e.run(ctx)
	if o.JSON {
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 1
		}
	} else {
		writeE2EText(stdout, rep)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// E2EReport is everything one `tandem bench e2e` measured; --json prints
// it as is.
type E2EReport struct {
	Command    string   `json:"command"`
	RunID      string   `json:"runId"`
	Flags      e2eFlags `json:"flags"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	NumCPU     int      `json:"numCpu"`
	Go         string   `json:"go"`
	TempDir    string   `json:"tempDir"`
	// LoadAverage is /proc/loadavg's 1, 5 and 15 minute figures when the
	// run started and when it ended: other work on the machine shows here.
	LoadAverage []string       `json:"loadAverage,omitempty"`
	Load        string         `json:"load"`
	Baselines   []*PhaseResult `json:"baselines"`
	Ceiling     float64        `json:"ceilingEventsPerSec"` // the search's upper bound
	Steps       []*E2EStep     `json:"steps"`
	// Sustained is the flat step with the highest offered rate; nil when
	// none was flat.
	Sustained *E2EStep `json:"sustained"`
	// The sustained accepted rate over the baselines' rates.
	OverCollectOnly *float64 `json:"sustainedOverCollectOnly"`
	OverLog         *float64 `json:"sustainedOverLog"`
	Warnings        []string `json:"warnings,omitempty"`
	Failures        []string `json:"failures,omitempty"`
}

type e2eFlags struct {
	e2eOptions
	Duration         string `json:"duration"`
	Warmup           string `json:"warmup"`
	BaselineDuration string `json:"baselineDuration"`
	LagSlack         string `json:"lagSlack"`
	MarkerInterval   string `json:"markerInterval"`
	Command          string `json:"commandLine"`
}

// E2EStep is one offered rate.
type E2EStep struct {
	N              int     `json:"step"`
	OfferedPerSec  float64 `json:"offeredEventsPerSec"`
	AcceptedPerSec float64 `json:"acceptedEventsPerSec"` // measured interval, from /metrics
	StoredPerSec   float64 `json:"storedEventsPerSec"`   // measured interval, from /metrics
	Seconds        float64 `json:"seconds"`              // measured interval
	P50Ms          float64 `json:"requestP50Ms"`         // /v1/batch latency, whole step
	P99Ms          float64 `json:"requestP99Ms"`
	// Lag: mean of the samples in the first and last 3 s of the measured
	// interval (shown; flat is judged on LagGrowthSeconds), and the
	// highest sample in it.
	LagStartSeconds float64 `json:"lagStartSeconds"`
	LagEndSeconds   float64 `json:"lagEndSeconds"`
	LagMaxSeconds   float64 `json:"lagMaxSeconds"`
	// LagGrowthSeconds is how much the lag grew over the measured
	// interval by the least-squares line through its floor (see
	// lagGrowth): what "flat" is judged on.
	LagGrowthSeconds float64 `json:"lagGrowthSeconds"`
	LagStartRecords  float64 `json:"lagStartRecords"`
	LagEndRecords    float64 `json:"lagEndRecords"`
	Flat             bool    `json:"flat"`
	Verdict          string  `json:"verdict"`
	// Markers: sent (acknowledged), seen in both a profile and a funnel,
	// and the delay from the 200 to that, over the visible ones.
	Markers        int              `json:"markers"`
	MarkersVisible int              `json:"markersVisible"`
	DelayP50Ms     *float64         `json:"delayP50Ms"`
	DelayP99Ms     *float64         `json:"delayP99Ms"`
	DelayMaxMs     *float64         `json:"delayMaxMs"`
	MarkerError    string           `json:"markerError,omitempty"`
	ServerCPUCores *float64         `json:"serverCpuCores"` // measured interval
	LoadgenCPU     *float64         `json:"loadgenCpuCores"`
	RSSMiB         *float64         `json:"rssMiB"`    // at the end of the measured interval
	RSSMaxMiB      *float64         `json:"rssMaxMiB"` // highest sample of the step
	Errors         map[string]int64 `json:"errors,omitempty"`
	FirstError     string           `json:"firstError,omitempty"`
	ServerExit     string           `json:"serverExit,omitempty"`
	// Shape is what the pipeline did over the measured interval, from
	// the child's /metrics; nil when the figures were missing.
	Shape *E2EShape `json:"pipeline,omitempty"`
	// CPU an accepted event over the measured interval: the node's and
	// the load generator's (this process, sharing the machine).
	ServerCPUMicros  *float64 `json:"serverCpuMicrosPerEvent"`
	LoadgenCPUMicros *float64 `json:"loadgenCpuMicrosPerEvent"`
}

// E2EShape is how the pipeline worked through a step's measured
// interval: the size of its batches, how often it committed on its own
// (beside the event store's row-group commits), how long it waited for
// collection, and each stage's wall time per event stored.
type E2EShape struct {
	Batches         float64 `json:"batches"`         // batches through the write stage
	RecordsPerBatch float64 `json:"recordsPerBatch"` // log records acknowledged per batch
	EventsPerBatch  float64 `json:"eventsPerBatch"`  // events stored per batch
	EventsPerRecord float64 `json:"eventsPerRecord"` // events stored per record acknowledged
	// Commits are the write stage's own commits of staged events (when
	// idle, or at CommitWait); EventsPerCommit is stored events over
	// them (row-group commits inside staging included in the events).
	Commits         float64 `json:"commits"`
	EventsPerCommit float64 `json:"eventsPerCommit,omitempty"`
	Deferrals       float64 `json:"deferrals"`      // waits for collection begun
	DeferringShare  float64 `json:"deferringShare"` // of the samples that found it waiting, -1 unknown
	// StageMicros is each stage's wall time (tandem_pipeline_stage_seconds)
	// per stored event, in µs.
	StageMicros map[string]float64 `json:"stageMicrosPerEvent"`
}

type e2eBencher struct {
	opts     e2eOptions
	gen      *generator
	progress io.Writer
}

func (e *e2eBencher) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, format+"\n", args...)
}

func (e *e2eBencher) run(ctx context.Context) *E2EReport {
	o := e.opts
	rep := &E2EReport{
		Command: "tandem bench e2e",
		RunID:   e.gen.runID,
		Flags: e2eFlags{e2eOptions: o, Duration: o.Duration.String(), Warmup: o.Warmup.String(),
			BaselineDuration: o.BaselineDuration.String(), LagSlack: o.LagSlack.String(),
			MarkerInterval: o.MarkerInterval.String(), Command: o.String()},
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Go:         runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		TempDir:    os.TempDir(),
		Load: fmt.Sprintf("%d events per person, %d identifiers per person, %d people per request",
			o.EventsPerProfile, o.Identifiers, (o.Batch+o.EventsPerProfile-1)/o.EventsPerProfile),
		Baselines: []*PhaseResult{},
		Steps:     []*E2EStep{},
	}
	if w := tempDirWarning(os.TempDir()); w != "" {
		rep.Warnings = append(rep.Warnings, w)
		e.logf("warning: %s", w)
	}
	if la := loadAverage(); la != "" {
		rep.LoadAverage = append(rep.LoadAverage, la)
		defer func() { rep.LoadAverage = append(rep.LoadAverage, loadAverage()) }()
	}
	fail := func(phase string, err error) {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", phase, err))
		e.logf("phase %s FAILED: %v", phase, err)
	}

	// The baselines reuse bench ingest's phases with the e2e bodies.
	var collectOnly, logBase *PhaseResult
	if !o.SkipBaselines {
		b := &bencher{opts: options{Clients: o.Clients, Batch: o.Batch, Duration: o.BaselineDuration}, gen: e.gen, progress: e.progress}
		ir := &Report{}
		if err := b.phaseCollectOnly(ctx, ir); err != nil {
			fail("collect-only", err)
		}
		if ctx.Err() == nil {
			if err := b.phaseLog(ctx, ir); err != nil {
				fail("log", err)
			}
		}
		for _, p := range ir.Phases {
			rep.Baselines = append(rep.Baselines, p)
			switch p.Name {
			case "collect-only":
				collectOnly = p
			case "log":
				logBase = p
			}
		}
	}
	ceiling := o.MaxRate
	if collectOnly != nil && collectOnly.EventsPerSec > 0 && (ceiling == 0 || collectOnly.EventsPerSec < ceiling) {
		ceiling = collectOnly.EventsPerSec
	}
	if ceiling == 0 {
		fail("search", errors.New("no ceiling: the collect-only baseline failed and --max-rate is not set"))
		return rep
	}
	ceiling = max(ceiling, o.MinRate)
	rep.Ceiling = ceiling

	lo, hi := 0.0, ceiling // highest flat, lowest unflat (or the ceiling)
	hiTried := false
	rate := max(o.MinRate, ceiling/4)
	for n := 1; n <= o.MaxSteps && ctx.Err() == nil; n++ {
		st, err := e.step(ctx, n, rate)
		if err != nil {
			fail(fmt.Sprintf("step %d (%s events/s)", n, group(rate)), err)
			break
		}
		rep.Steps = append(rep.Steps, st)
		if st.Flat {
			lo = rate
			if rep.Sustained == nil || st.OfferedPerSec > rep.Sustained.OfferedPerSec {
				rep.Sustained = st
			}
		} else {
			hi, hiTried = rate, true
		}
		if lo > 0 && hi <= lo*1.1 {
			break
		}
		if !st.Flat && rate <= o.MinRate {
			e.logf("search: not sustained even at --min-rate %s events/s", group(o.MinRate))
			break
		}
		if lo >= ceiling {
			break // flat at the ceiling: nothing higher to try
		}
		next := math.Sqrt(max(lo, o.MinRate) * hi)
		if lo == 0 {
			next = math.Sqrt(o.MinRate * hi)
		}
		if !st.Flat && st.StoredPerSec*0.95 > lo && st.StoredPerSec*0.95 < hi {
			next = st.StoredPerSec * 0.95
		}
		if !hiTried && st.Flat {
			// Nothing unflat yet: the ceiling itself is the upper end.
			next = math.Sqrt(lo * ceiling)
			if ceiling <= lo*1.1 {
				next = ceiling
			}
		}
		rate = max(o.MinRate, next)
	}
	if rep.Sustained != nil {
		if collectOnly != nil && collectOnly.EventsPerSec > 0 {
			rep.OverCollectOnly = ptr(rep.Sustained.AcceptedPerSec / collectOnly.EventsPerSec)
		}
		if logBase != nil && logBase.EventsPerSec > 0 {
			rep.OverLog = ptr(rep.Sustained.AcceptedPerSec / logBase.EventsPerSec)
		}
	}
	return rep
}

// step runs one offered rate against a fresh child.
func (e *e2eBencher) step(ctx context.Context, n int, rate float64) (*E2EStep, error) {
	o := e.opts
	name := fmt.Sprintf("step %d", n)
	st := &E2EStep{N: n, OfferedPerSec: rate}
	dir, err := tempDir("e2e")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	e.logf("%s: starting the server; offering %s events/s for %s + %s", name, group(rate), o.Warmup, o.Duration)
	srv, err := startServer(ctx, fmt.Sprintf("tandem server step %d", n), filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), newToken())
	if err != nil {
		return nil, err
	}
	defer srv.proc.kill()
	if err := srv.createSource(ctx); err != nil {
		return nil, srv.proc.failure(err)
	}

	sp := startSampler(ctx, srv, time.Second)
	hc := newHTTPClient(o.Clients)
	defer hc.CloseIdleConnections()
	var res *loadResult
	var loadErr error
	loadDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loadDone)
		res, loadErr = runLoad(ctx, hc, e.gen, loadOptions{URL: srv.base + "/v1/batch", WriteKey: srv.writeKey,
			Duration: o.Warmup + o.Duration, Rate: rate, CatchUp: true})
	}()
	sleep(ctx, o.Warmup)
	measureStart := time.Now()
	cpu0, cpuErr := srv.proc.cpu()
	self0, selfErr := selfCPU()
	mt := startMarkers(ctx, srv, e.gen.runID, n, o.MarkerInterval, measureStart)

	tick := time.NewTicker(time.Second)
progress:
	for {
		select {
		case <-loadDone:
			break progress
		case now := <-tick.C:
			if s, ok := sp.latest(); ok {
				sent, visible := mt.counts()
				e.logf("%s @ %s/s: %s/%s, %s accepted, %s stored, lag %s s (%s records), markers %d/%d visible",
					name, group(rate), now.Sub(start).Round(time.Second), o.Warmup+o.Duration,
					group(s.Accepted), group(s.Stored), secs(s.LagSeconds), lag(s.Lag), visible, sent)
			}
		}
	}
	tick.Stop()
	measureEnd := time.Now()
	cpu1, cpuErr1 := srv.proc.cpu()
	self1, selfErr1 := selfCPU()
	mt.stopSending()
	samples, serr := sp.finish()
	if loadErr != nil {
		mt.stop()
		return st, loadErr
	}
	wall := measureEnd.Sub(measureStart)
	st.Seconds = wall.Seconds()
	st.P50Ms, st.P99Ms = ms(percentile(res.Latencies, 50)), ms(percentile(res.Latencies, 99))
	if len(res.Errors) > 0 {
		st.Errors = res.Errors
		st.FirstError = res.FirstError
	}
	if cpuErr == nil && cpuErr1 == nil {
		st.ServerCPUCores = ptr((cpu1 - cpu0).Seconds() / wall.Seconds())
	}
	if selfErr == nil && selfErr1 == nil {
		st.LoadgenCPU = ptr((self1 - self0).Seconds() / wall.Seconds())
	}
	if err := judgeStep(st, samples, measureStart, measureEnd, o.LagSlack); err != nil {
		if serr != nil {
			err = fmt.Errorf("%w (last scrape error: %v)", err, serr)
		}
		mt.stop()
		return st, srv.proc.failure(err)
	}
	if st.AcceptedPerSec > 0 {
		if st.ServerCPUCores != nil {
			st.ServerCPUMicros = ptr(*st.ServerCPUCores / st.AcceptedPerSec * 1e6)
		}
		if st.LoadgenCPU != nil {
			st.LoadgenCPUMicros = ptr(*st.LoadgenCPU / st.AcceptedPerSec * 1e6)
		}
	}

	// A sustained step's markers get time to show up; an unflat step's
	// would only measure the backlog.
	if st.Flat {
		mt.wait(ctx, max(10*time.Second, min(o.Duration, 60*time.Second)))
	}
	mt.stop()
	mt.fill(st)
	e.logf("%s @ %s/s: %s — accepted %s/s, stored %s/s, lag %s → %s s (grew %+.1f s by the line); markers %d/%d visible, delay p50 %s ms, p99 %s ms; server %s CPU cores, RSS %s MiB",
		name, group(rate), st.Verdict, group(st.AcceptedPerSec), group(st.StoredPerSec), secs(st.LagStartSeconds), secs(st.LagEndSeconds), st.LagGrowthSeconds,
		st.MarkersVisible, st.Markers, optMs(st.DelayP50Ms), optMs(st.DelayP99Ms), cores(st.ServerCPUCores), optMs(st.RSSMiB))
	st.ServerExit = srv.proc.stop(stopTimeout)
	return st, nil
}

// judgeStep fills the step's rates, lag and memory from the samples and
// decides whether the lag stayed flat over [from, to].
func judgeStep(st *E2EStep, samples []sample, from, to time.Time, slack time.Duration) error {
	var in []sample
	var rssMax float64 = -1
	for _, s := range samples {
		rssMax = max(rssMax, s.RSS)
		// The sampler's first reading after the load may fall just after
		// to; allow half a second.
		if !s.At.Before(from.Add(-500*time.Millisecond)) && !s.At.After(to.Add(500*time.Millisecond)) {
			in = append(in, s)
		}
	}
	if len(in) < 2 {
		return fmt.Errorf("only %d /metrics samples in the measured interval", len(in))
	}
	first, last := in[0], in[len(in)-1]
	if first.LagSeconds < 0 || first.Accepted < 0 {
		return fmt.Errorf("/metrics lacks %s or %s", metricLagSeconds, metricAccepted)
	}
	secs := last.At.Sub(first.At).Seconds()
	st.AcceptedPerSec = (last.Accepted - first.Accepted) / secs
	st.StoredPerSec = (last.Stored - first.Stored) / secs
	const edge = 3 * time.Second
	var startS, endS, startR, endR []float64
	for _, s := range in {
		st.LagMaxSeconds = max(st.LagMaxSeconds, s.LagSeconds)
		if s.At.Sub(first.At) <= edge {
			startS, startR = append(startS, s.LagSeconds), append(startR, s.Lag)
		}
		if last.At.Sub(s.At) <= edge {
			endS, endR = append(endS, s.LagSeconds), append(endR, s.Lag)
		}
	}
	st.LagStartSeconds, st.LagEndSeconds = mean(startS), mean(endS)
	st.LagStartRecords, st.LagEndRecords = mean(startR), mean(endR)
	st.Shape = e2eShape(in)
	if last.RSS >= 0 {
		st.RSSMiB = ptr(last.RSS / (1 << 20))
		st.RSSMaxMiB = ptr(rssMax / (1 << 20))
	}
	kept := st.AcceptedPerSec >= 0.95*st.OfferedPerSec
	// The growth is the lag floor's (see lagGrowth), not the difference
	// of the two edges: a pipeline that keeps up holds its staged events
	// until a row group fills (up to 122,880 events, or CommitWait), so
	// its lag saw-tooths by seconds with that period, and the edges'
	// means differ by up to a tooth by where in it the interval happened
	// to start and end. The floor follows a lag that grows, tooth or not.
	grew := lagGrowth(in)
	st.LagGrowthSeconds = grew
	st.Flat = kept && grew <= slack.Seconds()
	switch {
	case st.Flat:
		st.Verdict = "flat"
	case !kept:
		st.Verdict = fmt.Sprintf("collection fell short: %.0f%% of the offered rate accepted", 100*st.AcceptedPerSec/st.OfferedPerSec)
	default:
		st.Verdict = fmt.Sprintf("lag grew %.1f s", grew)
	}
	return nil
}

// floorWindow is how long a window lagGrowth takes the lag's floor over:
// longer than a tooth of the lag's saw-tooth, which a pipeline that keeps
// up draws by holding staged events until its row group commits, at most
// its CommitWait (10 s) apart.
const floorWindow = 12 * time.Second

// lagGrowth is how much the lag's floor grew over the samples: the slope
// of the least-squares line through the lag's minimum over a window of
// floorWindow (centred, where the window fits; half the span when that is
// shorter), times the span. The teeth's bottoms are the pipeline's real
// backlog, and a window longer than a tooth holds one, so the floor
// follows a lag that grows and ignores the teeth. A line through the raw
// samples is pulled by where in a tooth the interval starts and ends, by
// up to a tooth's height either way.
func lagGrowth(in []sample) float64 {
	if len(in) < 2 {
		return 0
	}
	t0, t1 := in[0].At, in[len(in)-1].At
	span := t1.Sub(t0)
	half := min(floorWindow, span/2) / 2
	var floor []sample
	for _, s := range in {
		if s.At.Sub(t0) < half || t1.Sub(s.At) < half {
			continue
		}
		m := s.LagSeconds
		for _, o := range in {
			if d := o.At.Sub(s.At); d >= -half && d <= half {
				m = min(m, o.LagSeconds)
			}
		}
		floor = append(floor, sample{At: s.At, LagSeconds: m})
	}
	if len(floor) < 2 {
		floor = in
	}
	return lagSlope(floor) * span.Seconds()
}

// lagSlope is the slope of the least-squares line through the samples'
// lag, in seconds a second; 0 when it has none.
func lagSlope(in []sample) float64 {
	t0 := in[0].At
	var n, sx, sy, sxx, sxy float64
	for _, s := range in {
		x := s.At.Sub(t0).Seconds()
		n++
		sx += x
		sy += s.LagSeconds
		sxx += x * x
		sxy += x * s.LagSeconds
	}
	den := n*sxx - sx*sx
	if den <= 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// e2eShape is the pipeline's shape over the samples of a measured
// interval (at least two), nil when they lack the figures.
func e2eShape(in []sample) *E2EShape {
	first, last := in[0], in[len(in)-1]
	d := func(name string) (float64, bool) {
		a, ok1 := first.All[name]
		b, ok2 := last.All[name]
		return b - a, ok1 && ok2
	}
	batches, ok1 := d(`tandem_pipeline_stage_seconds_count{stage="write"}`)
	records, ok2 := d("tandem_pipeline_records_total")
	if !ok1 || !ok2 {
		return nil
	}
	stored := last.Stored - first.Stored
	sh := &E2EShape{Batches: batches, DeferringShare: -1, StageMicros: map[string]float64{}}
	if batches > 0 {
		sh.RecordsPerBatch = records / batches
		sh.EventsPerBatch = stored / batches
	}
	if records > 0 {
		sh.EventsPerRecord = stored / records
	}
	sh.Commits, _ = d(`tandem_pipeline_stage_seconds_count{stage="commit"}`)
	if sh.Commits > 0 {
		sh.EventsPerCommit = stored / sh.Commits
	}
	sh.Deferrals, _ = d("tandem_pipeline_deferrals_total")
	// The share of samples (a second apart) that found it waiting.
	var waiting []float64
	for _, s := range in {
		if v, ok := s.All["tandem_pipeline_deferring"]; ok {
			waiting = append(waiting, v)
		}
	}
	if len(waiting) > 0 {
		sh.DeferringShare = mean(waiting)
	}
	for _, stage := range []string{"read", "decode", "state", "write", "commit"} {
		if v, ok := d(`tandem_pipeline_stage_seconds_sum{stage="` + stage + `"}`); ok && stored > 0 {
			sh.StageMicros[stage] = v / stored * 1e6
		}
	}
	return sh
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "" where
// /proc/loadavg does not exist.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func optMicros(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}

func secs(v float64) string {
	if v < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f", v)
}

func optMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return group(*v)
}

// writeE2EText prints the report for people.
func writeE2EText(w io.Writer, rep *E2EReport) {
	o := rep.Flags.e2eOptions
	fmt.Fprintf(w, "%s: %d clients × %d events per request; %s; steps of %s warm-up + %s measured (run %s)\n",
		rep.Command, o.Clients, o.Batch, rep.Load, o.Warmup, o.Duration, rep.RunID)
	fmt.Fprintf(w, "GOMAXPROCS %d, NumCPU %d, %s, temp dir %s\n", rep.GOMAXPROCS, rep.NumCPU, rep.Go, rep.TempDir)
	if len(rep.LoadAverage) == 2 {
		fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end\n", rep.LoadAverage[0], rep.LoadAverage[1])
	}
	fmt.Fprintln(w)
	if len(rep.Baselines) > 0 {
		fmt.Fprintf(w, "baselines, as fast as answered for %s:\n", o.BaselineDuration)
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "phase \t events/s \t p50 ms \t p99 ms \t server CPU cores \t errors \t")
		for _, p := range rep.Baselines {
			server := cores(p.ServerCPUCores)
			if p.InProcess {
				server += " (in-process)"
			}
			fmt.Fprintf(tw, "%s \t %s \t %.1f \t %.1f \t %s \t %s \t\n", p.Name, group(p.EventsPerSec), p.P50Ms, p.P99Ms, server, errorList(p.Errors))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if len(rep.Steps) > 0 {
		fmt.Fprintf(w, "steps (open-loop; ceiling %s events/s):\n", group(rep.Ceiling))
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "step \t offered/s \t accepted/s \t stored/s \t lag s start → end (max) \t lag growth s \t lag records end \t delay p50 / p99 ms \t markers \t server CPU \t RSS MiB \t verdict \t")
		for _, s := range rep.Steps {
			fmt.Fprintf(tw, "%d \t %s \t %s \t %s \t %s → %s (%s) \t %+.1f \t %s \t %s / %s \t %d/%d \t %s \t %s \t %s \t\n", s.N,
				group(s.OfferedPerSec), group(s.AcceptedPerSec), group(s.StoredPerSec),
				secs(s.LagStartSeconds), secs(s.LagEndSeconds), secs(s.LagMaxSeconds), s.LagGrowthSeconds, lag(s.LagEndRecords),
				optMs(s.DelayP50Ms), optMs(s.DelayP99Ms), s.MarkersVisible, s.Markers, cores(s.ServerCPUCores), optMs(s.RSSMiB), s.Verdict)
		}
		tw.Flush()
		fmt.Fprintln(w)
		fmt.Fprintln(w, "the pipeline in each step's measured interval (stage wall µs per stored event; CPU µs per accepted event):")
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
		fmt.Fprintln(tw, "step \t batches \t records/batch \t events/batch \t events/record \t own commits \t deferrals (share) \t read / decode / state / write / commit µs \t server CPU µs \t load gen CPU µs \t")
		for _, s := range rep.Steps {
			sh := s.Shape
			if sh == nil {
				continue
			}
			share := "-"
			if sh.DeferringShare >= 0 {
				share = fmt.Sprintf("%.0f%%", 100*sh.DeferringShare)
			}
			m := sh.StageMicros
			fmt.Fprintf(tw, "%d \t %.0f \t %.1f \t %s \t %.0f \t %.0f \t %.0f (%s) \t %.1f / %.1f / %.1f / %.1f / %.1f \t %s \t %s \t\n", s.N,
				sh.Batches, sh.RecordsPerBatch, group(sh.EventsPerBatch), sh.EventsPerRecord, sh.Commits, sh.Deferrals, share,
				m["read"], m["decode"], m["state"], m["write"], m["commit"], optMicros(s.ServerCPUMicros), optMicros(s.LoadgenCPUMicros))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	if s := rep.Sustained; s != nil {
		fmt.Fprintf(w, "sustained end to end: %s events/s (step %d, offered %s/s), lag %s → %s s\n",
			group(s.AcceptedPerSec), s.N, group(s.OfferedPerSec), secs(s.LagStartSeconds), secs(s.LagEndSeconds))
		fmt.Fprintf(w, "from the 200 to queryable in a profile and a funnel: p50 %s ms, p99 %s ms, max %s ms (%d of %d markers)\n",
			optMs(s.DelayP50Ms), optMs(s.DelayP99Ms), optMs(s.DelayMaxMs), s.MarkersVisible, s.Markers)
		fmt.Fprintf(w, "server at that rate: %s CPU cores, RSS %s MiB (max %s); load generator %s CPU cores\n",
			cores(s.ServerCPUCores), optMs(s.RSSMiB), optMs(s.RSSMaxMiB), cores(s.LoadgenCPU))
		if r := rep.OverCollectOnly; r != nil {
			fmt.Fprintf(w, "sustained ÷ collect-only: %.2f×\n", *r)
		}
		if r := rep.OverLog; r != nil {
			fmt.Fprintf(w, "sustained ÷ log:          %.2f×\n", *r)
		}
	} else if len(rep.Steps) > 0 {
		fmt.Fprintln(w, "sustained end to end: no step kept the lag flat")
	}
	fmt.Fprintf(w, "flat: ≥ 95%% of the offered events accepted and the lag's floor grew ≤ %s over the measured interval (least-squares line through its minimum over %s windows)\n", o.LagSlack, floorWindow)
	for _, s := range rep.Steps {
		if s.MarkerError != "" {
			fmt.Fprintf(w, "step %d: markers: %s\n", s.N, s.MarkerError)
		}
		if s.FirstError != "" {
			fmt.Fprintf(w, "step %d: first error: %s\n", s.N, s.FirstError)
		}
		if s.ServerExit != "" && s.ServerExit != "exit 0" {
			fmt.Fprintf(w, "step %d: server on SIGTERM: %s\n", s.N, s.ServerExit)
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
