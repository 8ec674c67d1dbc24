// Package bench implements `tandem bench`: measurements of a tandem server
// that report figures and never pass or fail on them.
//
// `tandem bench ingest` drives the collection API (/v1/batch) with many
// keep-alive clients and reports accepted events per second, request
// latency and the CPU the server and the load generator used. Beside tandem
// it measures two baselines with the same load: "sink", the simplest
// durable HTTP endpoint (a child process that fsyncs request bodies to one
// file with group commit), and "log", the embedded event log appended to
// in-process through the group committer, without HTTP or parsing. It also
// reads the pipeline's progress during ingest, and times how fast a
// restarted server drains a backlog its log holds ("drain").
//
// The load generator keeps one JSON body per client and patches
// fixed-width counter digits into its messageIds for each request, so
// every event of a run is unique and no JSON is encoded per request.
//
// `tandem bench e2e` (e2e.go) finds the highest rate a whole node
// sustains with a flat pipeline lag, with the delay until an event shows
// in a profile and a funnel, reusing the ingest phases as its baselines.
//
// `tandem bench sink` is the sink baseline's process; it is not listed in
// the usage.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tandem/event"
)

const benchUsage = `Usage: tandem bench COMMAND [flags]

Commands:
  ingest    collection throughput: tandem against a plain fsync sink and the
            bare event log, pipeline progress, backlog drain
  funnel    journey analytics on the embedded event store: a 4-step funnel
            against the plain SQL baseline, a journey, retention
  attribution
            attribution on the embedded event store: each model's time over
            generated touches and purchases, against a funnel over the
            same events
  import    bulk import of a generated CSV file (1M rows, 3 identifiers) into
            a real server: rows/s, CPU, peak RSS, against encoding/csv alone
  identity  identity resolution over a generated identity load, against
            the event store alone
  dedup     the event store's messageId dedup with a full window: memory
            per id, load time, append rate against an empty store
  delivery  collection to webhook latency at a given rate into two
            destinations, with one of them slow and failing, and from a
            profile's qualifying event to its "Audience Entered"
  e2e       a whole node's sustained end-to-end rate (collection, identity,
            event store) with flat pipeline lag, the delay until an event is
            in a profile and a funnel, CPU and RSS, against collect-only and
            the bare event log

Run "tandem bench COMMAND --help" for a command's flags.
`

// Main runs `tandem bench` with args after "bench". It returns the exit
// code: 0 ok, 1 runtime failure, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "ingest":
		return ingestMain(args[1:], stdout, stderr)
	case "sink":
		return sinkMain(args[1:], stdout, stderr)
	case "funnel":
		return funnelMain(args[1:], stdout, stderr)
	case "attribution":
		return attributionMain(args[1:], stdout, stderr)
	case "import":
		return importMain(args[1:], stdout, stderr)
	case "identity":
		return identityMain(args[1:], stdout, stderr)
	case "dedup":
		return dedupMain(args[1:], stdout, stderr)
	case "e2e":
		return e2eMain(args[1:], stdout, stderr)
	case "delivery":
		return deliveryMain(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, benchUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "tandem bench: unknown command %q\n\n%s", args[0], benchUsage)
		return 2
	}
}

// parseFlags parses args into fs. On --help it prints usage and the flags
// to stdout; on a bad flag it names it on stderr. ok is false when the
// caller should return code.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\nRun \"%s --help\" for the flags.\n", fs.Name(), err, fs.Name())
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

func usageErr(stderr io.Writer, cmd, flagName, msg string) int {
	fmt.Fprintf(stderr, "%s: %s: %s\n", cmd, flagName, msg)
	return 2
}

// options are the flags of `tandem bench ingest`.
type options struct {
	Clients       int           `json:"clients"`
	Batch         int           `json:"batch"`
	Duration      time.Duration `json:"-"`
	Backlog       int64         `json:"backlog"`
	Rate          float64       `json:"rate,omitempty"` // offered events/s in the timed HTTP phases; 0: as fast as answered
	Target        string        `json:"target,omitempty"`
	WriteKey      string        `json:"-"`
	SkipBaselines bool          `json:"skipBaselines"`
	SkipDrain     bool          `json:"skipDrain"`
	JSON          bool          `json:"json"`
}

// String gives the flags as a command line, the write key hidden.
func (o options) String() string {
	s := fmt.Sprintf("--clients %d --batch %d --duration %s --backlog %d", o.Clients, o.Batch, o.Duration, o.Backlog)
	if o.Target != "" {
		s += " --target " + o.Target + " --write-key ***"
	}
	if o.Rate > 0 {
		s += fmt.Sprintf(" --rate %.0f", o.Rate)
	}
	if o.SkipBaselines {
		s += " --skip-baselines"
	}
	if o.SkipDrain {
		s += " --skip-drain"
	}
	if o.JSON {
		s += " --json"
	}
	return s
}

const ingestUsage = `Usage: tandem bench ingest [flags]

Measures collection throughput. Phases, each with a fresh temporary data
directory (set TMPDIR to put them on the disk you mean to measure):

  tandem  start "tandem serve" as a child process, create a source, drive
          POST /v1/batch for --duration; report events/s, requests/s,
          p50/p99 latency, server and load-generator CPU, and the pipeline's
          progress read from /metrics (or drive --target instead)
  sink    the same load against "tandem bench sink", a minimal HTTP server
          that fsyncs bodies to one file with group commit
  log     the same encoded batches appended in-process to the embedded
          event log through the group committer: no HTTP, no parsing
  drain   ingest --backlog events with --pipeline=false, restart the server
          with its pipeline and time until the backlog is stored

It reports figures; it never fails on them. Exit status 1 means a phase
could not run.

Flags:
`

func ingestMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench ingest"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var o options
	fs.IntVar(&o.Clients, "clients", 16, "concurrent HTTP clients (goroutines, each with a keep-alive connection)")
	fs.IntVar(&o.Batch, "batch", 100, "track events per /v1/batch request")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each timed phase (tandem, sink, log) runs")
	fs.Int64Var(&o.Backlog, "backlog", 1_000_000, "events ingested for the drain phase")
	fs.StringVar(&o.Target, "target", "", "base URL of a running tandem server to drive instead of starting one (needs --write-key; no server CPU figure, no drain)")
	fs.StringVar(&o.WriteKey, "write-key", "", "write key of an approved source on --target")
	fs.Float64Var(&o.Rate, "rate", 0, "offered load in events/s across all clients for the timed HTTP phases (0: each client sends as fast as it is answered); use it to check that the pipeline keeps up with a given rate")
	fs.BoolVar(&o.SkipBaselines, "skip-baselines", false, "skip the sink and log baselines")
	fs.BoolVar(&o.SkipDrain, "skip-drain", false, "skip the drain phase")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&profileDir, "cpuprofile", "", "directory to write a CPU profile of each child process to (tandem-server.pprof, collection-only-server.pprof, sink.pprof), for go tool pprof")
	if code, ok := parseFlags(fs, args, ingestUsage, stdout, stderr); !ok {
		return code
	}
	switch {
	case o.Clients < 1 || o.Clients > maxClients:
		return usageErr(stderr, cmd, "--clients", fmt.Sprintf("must be between 1 and %d", maxClients))
	case o.Batch < 1 || o.Batch > event.MaxBatchEvents:
		return usageErr(stderr, cmd, "--batch", fmt.Sprintf("must be between 1 and %d", event.MaxBatchEvents))
	case o.Duration <= 0:
		return usageErr(stderr, cmd, "--duration", "must be positive")
	case o.Rate < 0:
		return usageErr(stderr, cmd, "--rate", "must not be negative")
	case o.Backlog < 1 && !o.SkipDrain:
		return usageErr(stderr, cmd, "--backlog", "must be positive (or use --skip-drain)")
	case o.Target != "" && o.WriteKey == "":
		return usageErr(stderr, cmd, "--write-key", "is required with --target")
	case o.Target == "" && o.WriteKey != "":
		return usageErr(stderr, cmd, "--target", "is required with --write-key")
	}
	if o.Target != "" {
		u, err := url.Parse(o.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageErr(stderr, cmd, "--target", "want a base URL like http://127.0.0.1:8080")
		}
		o.Target = strings.TrimRight(o.Target, "/")
	}
	b := &bencher{opts: o, progress: stderr}
	b.gen = newGenerator(newRunID(), o.Clients, o.Batch, time.Now())
	if n := len(b.gen.templates[0].patch.b); n > event.MaxRequestBytes {
		return usageErr(stderr, cmd, "--batch", fmt.Sprintf("%d events make a %d-byte body, over the %d-byte request limit", o.Batch, n, event.MaxRequestBytes))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep := b.run(ctx)
	if o.JSON {
		if err := writeJSON(stdout, rep); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return 1
		}
	} else {
		writeText(stdout, rep)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// bencher runs the phases of one `tandem bench ingest`.
type bencher struct {
	opts     options
	gen      *generator
	progress io.Writer
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, format+"\n", args...)
}

// tempDir makes a temporary directory for a phase.
func tempDir(phase string) (string, error) {
	return os.MkdirTemp("", "tandem-bench-"+phase+"-")
}
