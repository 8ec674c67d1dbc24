package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// stopTimeout is how long a child gets to exit after SIGTERM.
const stopTimeout = 60 * time.Second

// run runs every phase asked for and gathers the report. A phase that
// fails is recorded and the others still run, unless the run is
// interrupted.
func (b *bencher) run(ctx context.Context) *Report {
	o := b.opts
	rep := &Report{
		Command:    "tandem bench ingest",
		RunID:      b.gen.runID,
		Flags:      reportFlags{options: o, Duration: o.Duration.String(), Command: o.String()},
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		Go:         runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		TempDir:    os.TempDir(),
	}
	if w := tempDirWarning(os.TempDir()); w != "" {
		rep.Warnings = append(rep.Warnings, w)
		b.logf("warning: %s", w)
	}
	fail := func(phase string, err error) {
		msg := fmt.Sprintf("%s: %v", phase, err)
		rep.Failures = append(rep.Failures, msg)
		b.logf("phase %s FAILED: %v", phase, err)
	}
	type step struct {
		name string
		skip bool
		run  func(context.Context, *Report) error
	}
	steps := []step{
		{"tandem", false, b.phaseTandem},
		{"collect-only", o.Target != "", b.phaseCollectOnly},
		{"sink", o.SkipBaselines, b.phaseSink},
		{"log", o.SkipBaselines, b.phaseLog},
		{"drain", o.SkipDrain || o.Target != "", b.phaseDrain},
	}
	if o.Target != "" && !o.SkipDrain {
		rep.Warnings = append(rep.Warnings, "drain skipped: it restarts the server, which --target cannot")
	}
	for _, s := range steps {
		if s.skip {
			continue
		}
		if ctx.Err() != nil {
			fail(s.name, errors.New("not run: interrupted"))
			continue
		}
		if err := s.run(ctx, rep); err != nil {
			if ctx.Err() != nil {
				err = errors.New("interrupted")
			}
			fail(s.name, err)
		}
	}
	rep.Ratios = ratios(rep.Phases)
	return rep
}

// measured runs the load and measures CPU: of the child if proc is set, and
// of this process.
func (b *bencher) measured(ctx context.Context, name string, proc *child, lo loadOptions) (*PhaseResult, *loadResult, error) {
	lo.Phase = name
	lo.Progress = b.progress
	hc := newHTTPClient(b.opts.Clients)
	defer hc.CloseIdleConnections()
	var child0 time.Duration
	var childErr error
	if proc != nil {
		child0, childErr = proc.cpu()
	}
	self0, selfErr := selfCPU()
	t0 := time.Now()
	res, err := runLoad(ctx, hc, b.gen, lo)
	wall := time.Since(t0)
	self1, selfErr1 := selfCPU()
	var child1 time.Duration
	if proc != nil && childErr == nil {
		child1, childErr = proc.cpu()
	}
	if err != nil {
		return nil, nil, err
	}
	pr := phaseFromLoad(name, res)
	if selfErr == nil && selfErr1 == nil {
		pr.LoadgenCPUCores = ptr((self1 - self0).Seconds() / wall.Seconds())
	}
	if proc != nil && childErr == nil {
		pr.ServerCPUCores = ptr((child1 - child0).Seconds() / wall.Seconds())
	}
	b.logf("phase %s: %s events/s, %s requests/s, p50 %.1f ms, p99 %.1f ms", name,
		group(pr.EventsPerSec), group(pr.RequestsPerSec), pr.P50Ms, pr.P99Ms)
	if res.Events == 0 {
		return pr, res, fmt.Errorf("no request was accepted (%d sent; first error: %s)", res.Requests, res.FirstError)
	}
	return pr, res, nil
}

func phaseFromLoad(name string, res *loadResult) *PhaseResult {
	pr := &PhaseResult{
		Name:           name,
		Events:         res.Events,
		Requests:       res.Requests,
		Seconds:        res.Elapsed.Seconds(),
		EventsPerSec:   res.eventsPerSec(),
		RequestsPerSec: res.requestsPerSec(),
		P50Ms:          ms(percentile(res.Latencies, 50)),
		P99Ms:          ms(percentile(res.Latencies, 99)),
		FirstError:     res.FirstError,
	}
	if len(res.Errors) > 0 {
		pr.Errors = res.Errors
	}
	return pr
}

func newToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// phaseTandem drives a tandem server: a child started here, or --target.
func (b *bencher) phaseTandem(ctx context.Context, rep *Report) error {
	var srv *server
	if b.opts.Target != "" {
		srv = &server{base: b.opts.Target, writeKey: b.opts.WriteKey}
		b.logf("phase tandem: driving %s for %s", srv.base, b.opts.Duration)
	} else {
		dir, err := tempDir("tandem")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		b.logf("phase tandem: starting the server")
		srv, err = startServer(ctx, "tandem server", filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), newToken())
		if err != nil {
			return err
		}
		defer srv.proc.kill()
		if err := srv.createSource(ctx); err != nil {
			return srv.proc.failure(err)
		}
		b.logf("phase tandem: server ready at %s; %d clients for %s", srv.base, b.opts.Clients, b.opts.Duration)
	}

	sp := startSampler(ctx, srv, time.Second)
	pr, _, err := b.measured(ctx, "tandem", srv.proc, loadOptions{URL: srv.base + "/v1/batch", WriteKey: srv.writeKey, Duration: b.opts.Duration, Rate: b.opts.Rate})
	samples, serr := sp.finish()
	if pr != nil {
		rep.Phases = append(rep.Phases, pr)
		rep.Pipeline = pipelineFrom(samples, serr, pr.EventsPerSec)
	}
	if srv.proc != nil {
		exit := srv.proc.stop(stopTimeout)
		if pr != nil {
			pr.ServerExit = exit
		}
		if exit != "exit 0" {
			rep.Warnings = append(rep.Warnings, "tandem server did not stop cleanly on SIGTERM: "+exit)
			if err == nil {
				b.logf("phase tandem: server %s\n%s", exit, srv.proc.logTail(20))
			}
		}
		if err != nil {
			return srv.proc.failure(err)
		}
	}
	return err
}

// pipelineFrom sums up the metrics samples taken during the tandem phase.
//
// The pipeline keeps up when it stores at least 95% of the rate collection
// accepted; the lag figures show how far behind it was.
func pipelineFrom(samples []sample, err error, accepted float64) *PipelineResult {
	p := &PipelineResult{Samples: len(samples)}
	if len(samples) < 2 {
		if err == nil {
			err = errors.New("too few samples")
		}
		p.Error = "pipeline metrics unavailable: " + err.Error()
		return p
	}
	first, last := samples[0], samples[len(samples)-1]
	p.StoredEvents = last.Stored - first.Stored
	p.Seconds = last.At.Sub(first.At).Seconds()
	p.StoredPerSec = p.StoredEvents / p.Seconds
	p.LagStart, p.LagEnd = first.Lag, last.Lag
	for _, s := range samples {
		p.LagMax = max(p.LagMax, s.Lag)
	}
	p.Growing = accepted > 0 && p.StoredPerSec < 0.95*accepted
	if err != nil {
		p.Error = "some scrapes failed: " + err.Error()
	}
	return p
}

// phaseCollectOnly drives a collection-only tandem node (--pipeline=false):
// the durable ingest path alone, comparable with the sink, while the
// "tandem" phase shows a whole node sharing the cores with its pipeline.
func (b *bencher) phaseCollectOnly(ctx context.Context, rep *Report) error {
	dir, err := tempDir("collect")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.logf("phase collect-only: starting the server with --pipeline=false")
	srv, err := startServer(ctx, "collection-only server", filepath.Join(dir, "data"), filepath.Join(dir, "server.log"), newToken(), "--pipeline=false")
	if err != nil {
		return err
	}
	defer srv.proc.kill()
	if err := srv.createSource(ctx); err != nil {
		return srv.proc.failure(err)
	}
	pr, _, err := b.measured(ctx, "collect-only", srv.proc, loadOptions{URL: srv.base + "/v1/batch", WriteKey: srv.writeKey, Duration: b.opts.Duration, Rate: b.opts.Rate})
	if pr != nil {
		rep.Phases = append(rep.Phases, pr)
		pr.ServerExit = srv.proc.stop(stopTimeout)
	}
	if err != nil {
		return srv.proc.failure(err)
	}
	return nil
}

// phaseSink drives the sink baseline as a child process.
func (b *bencher) phaseSink(ctx context.Context, rep *Report) error {
	dir, err := tempDir("sink")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "sink.out")
	b.logf("phase sink: starting the sink")
	c, err := startChild("sink", addr, filepath.Join(dir, "sink.log"), childEnv(), "bench", "sink", "--addr", addr, "--file", out)
	if err != nil {
		return err
	}
	defer c.kill()
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		return err
	}
	pr, res, err := b.measured(ctx, "sink", c, loadOptions{URL: c.base + "/v1/batch", WriteKey: "bench", Duration: b.opts.Duration, Rate: b.opts.Rate})
	exit := c.stop(stopTimeout)
	if pr != nil {
		pr.ServerExit = exit
		rep.Phases = append(rep.Phases, pr)
	}
	if err != nil {
		return c.failure(err)
	}
	if exit != "exit 0" {
		return c.failure(fmt.Errorf("sink did not stop cleanly: %s", exit))
	}
	// Every acknowledged body must be in the file; with no failed request,
	// nothing else may be.
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	if want := res.Bytes + res.OK; fi.Size() < want || (len(res.Errors) == 0 && fi.Size() != want) {
		return fmt.Errorf("sink file holds %d bytes, but the acknowledged bodies and newlines make %d", fi.Size(), want)
	}
	return nil
}

// phaseDrain ingests a backlog into a server without its pipeline, restarts
// it with the pipeline and times the drain.
func (b *bencher) phaseDrain(ctx context.Context, rep *Report) error {
	dir, err := tempDir("drain")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	token := newToken()
	d := &DrainResult{}

	b.logf("phase drain: starting the server with --pipeline=false")
	srv, err := startServer(ctx, "tandem server (collection only)", data, filepath.Join(dir, "server-ingest.log"), token, "--pipeline=false")
	if err != nil {
		return err
	}
	defer srv.proc.kill()
	if err := srv.createSource(ctx); err != nil {
		return srv.proc.failure(err)
	}
	b.logf("phase drain: ingesting a backlog of %s events", group(float64(b.opts.Backlog)))
	// Generous: a server ingesting 2,000 events/s still makes it.
	lctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(b.opts.Backlog/2000)*time.Second)
	hc := newHTTPClient(b.opts.Clients)
	res, err := runLoad(lctx, hc, b.gen, loadOptions{URL: srv.base + "/v1/batch", WriteKey: srv.writeKey,
		Events: b.opts.Backlog, Phase: "drain (backlog)", Progress: b.progress})
	hc.CloseIdleConnections()
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && res != nil {
			err = fmt.Errorf("backlog not ingested in time: %d of %d events accepted (first error: %s)", res.Events, b.opts.Backlog, res.FirstError)
		}
		return srv.proc.failure(err)
	}
	d.Events = res.Events
	d.IngestSeconds = res.Elapsed.Seconds()
	d.IngestEventsPerSec = res.eventsPerSec()
	if len(res.Errors) > 0 {
		d.IngestErrors = res.Errors
	}
	exit := srv.proc.stop(stopTimeout)
	d.ServerExits = append(d.ServerExits, "collection-only server: "+exit)
	if exit != "exit 0" {
		return srv.proc.failure(fmt.Errorf("collection-only server did not stop cleanly: %s", exit))
	}
	rep.Drain = d

	b.logf("phase drain: restarting the server with its pipeline")
	t0 := time.Now()
	srv, err = startServer(ctx, "tandem server (draining)", data, filepath.Join(dir, "server-drain.log"), token)
	if err != nil {
		return err
	}
	defer srv.proc.kill()
	ready := time.Now()
	d.StartSeconds = ready.Sub(t0).Seconds()
	cpu0, cpuErr := srv.proc.cpu()

	timeout := time.Minute + time.Duration(d.Events/2000)*time.Second
	mc := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastLog := ready
	var last sample
	first := true
	for {
		s, err := scrapePipeline(ctx, srv, mc)
		if err == nil {
			if first {
				d.StoredAtReady = s.Stored
				first = false
			}
			last = s
			if s.Stored >= float64(d.Events) && d.StoredSeconds == 0 {
				d.StoredSeconds = s.At.Sub(ready).Seconds()
			}
			if s.Stored >= float64(d.Events) && s.Lag == 0 {
				d.Seconds = s.At.Sub(ready).Seconds()
				d.EventsPerSec = float64(d.Events) / d.Seconds
				break
			}
		}
		if srv.proc.exited() {
			return srv.proc.failure(fmt.Errorf("server exited while draining (%s)", srv.proc.exitDesc()))
		}
		if time.Since(ready) > timeout {
			return srv.proc.failure(fmt.Errorf("backlog not drained after %s: %s of %s events stored, lag %g records (last scrape error: %v)",
				timeout, group(last.Stored), group(float64(d.Events)), last.Lag, err))
		}
		if time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			b.logf("phase drain: %s, %s/%s events stored, lag %g records", time.Since(ready).Round(time.Second), group(last.Stored), group(float64(d.Events)), last.Lag)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	if cpuErr == nil {
		if cpu1, err := srv.proc.cpu(); err == nil {
			d.ServerCPUCores = ptr((cpu1 - cpu0).Seconds() / d.Seconds)
		}
	}
	b.logf("phase drain: %s events drained in %.2f s: %s events/s", group(float64(d.Events)), d.Seconds, group(d.EventsPerSec))
	exit = srv.proc.stop(stopTimeout)
	d.ServerExits = append(d.ServerExits, "draining server: "+exit)
	if exit != "exit 0" {
		return srv.proc.failure(fmt.Errorf("draining server did not stop cleanly: %s", exit))
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
