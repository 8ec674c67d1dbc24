package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// flagSet declares every flag of `tandem serve`, each bound to its field of
// c; the field's value at the time of the call is the flag's default. This
// is the only list of flags: environment variables and file keys are
// derived from the names (see [envVar] and [fileKey]). A word in back
// quotes is the value's name in --help.
func (c *Config) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed by Load
	fs.Usage = func() {}

	fs.StringVar(&c.File, "config", c.File, "YAML configuration `FILE`; its keys are the flags' names in snake_case")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "`DIR` under which the embedded event log, state store and event store live")
	fs.StringVar(&c.Addr, "addr", c.Addr, "`HOST:PORT` to listen on")

	fs.StringVar(&c.Log, "log", c.Log, "event log: empty for the embedded NATS JetStream, or the `URL` nats://host:port[,host:port…] of a NATS cluster")
	fs.StringVar(&c.State, "state", c.State, "state store: empty for the embedded SQLite, or a postgres:// `URL`")
	fs.StringVar(&c.Events, "events", c.Events, "event store: empty for the embedded DuckDB, or a clickhouse:// `URL`")

	fs.Var((*sizeValue)(&c.EventsMemoryLimit), "events-memory-limit", "most memory the embedded event store's DuckDB may use (its buffer pool; queries spill to disk beyond it), less what its dedup filter holds beyond 32MiB, down to 64MiB; at least 32MiB; 0: DuckDB's default, 80% of RAM")

	fs.StringVar(&c.LogSync, "log-sync", c.LogSync, "when the event log acknowledges (`MODE`): only always, after fsync, is accepted")
	fs.Var((*sizeValue)(&c.LogMaxBytes), "log-max-bytes", "cap on the event log's size; when it is full, collection answers 503; 0: only the disk")
	fs.DurationVar(&c.LogMaxAge, "log-max-age", c.LogMaxAge, "how long records stay in the event log")
	fs.IntVar(&c.LogReplicas, "log-replicas", c.LogReplicas, "external event log: `N` replicas of the stream, 1 to 5; 0: 3 when --log names three or more servers, else 1")
	fs.DurationVar(&c.LogAckWait, "log-ack-wait", c.LogAckWait, "external event log: how long records fetched by a node that died wait before another node processes them")
	fs.Var((*sizeValue)(&c.QueueBytes), "log-queue-bytes", "most bytes of events waiting to be appended to the event log, at least 1MiB; beyond it, collection answers 503")
	fs.DurationVar(&c.MaxPipelineLag, "max-pipeline-lag", c.MaxPipelineLag, "when the oldest unprocessed event has waited longer than this `DURATION`, collection answers 503 overloaded; 0: keep accepting (the log is durable)")
	fs.DurationVar(&c.ReplayLast, "replay-last", c.ReplayLast, "at start, process the event log's records of the last `DURATION` again (idempotent; recovers events an event store lost in an OS crash, see docs/operations.md#durability); 0: none")
	fs.IntVar(&c.MaxInflight, "max-inflight", c.MaxInflight, "most collection requests served at once (`N`, at least 1); beyond it, collection answers 503")

	fs.Float64Var(&c.SourceRateLimit, "source-rate-limit", c.SourceRateLimit, "events per second one source may send (429 beyond); 0 disables")
	fs.IntVar(&c.SourceBurst, "source-burst", c.SourceBurst, "events one source may send in a burst")

	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "http(s) `URL` browsers and SDKs reach this node at; empty: the request's own host")
	fs.Var((*listValue)(&c.TrustedProxies), "trusted-proxies", "`CIDR,…` of the proxies whose X-Forwarded-For is believed for context.ip; a bare IP is that address alone")
	fs.Var((*listValue)(&c.DestinationAllow), "destination-allow", "`CIDR,…` destinations may reach despite the SSRF guard (e.g. 127.0.0.0/8 for local testing)")

	fs.BoolVar(&c.Pipeline, "pipeline", c.Pipeline, "run the processing pipeline on this node; false makes a collection-only node")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long SIGTERM waits for in-flight work")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "`LEVEL` of the logs: debug, info, warn or error")

	// Remember the value a command line argument failed on: the flag
	// package reports it only as text.
	failed := new(failure)
	fs.VisitAll(func(f *flag.Flag) { f.Value = &tracked{Value: f.Value, name: f.Name, failed: failed} })
	return fs
}

// A failure is the last value a flag refused.
type failure struct {
	name, value string
	err         error
}

// tracked records the values its flag refuses.
type tracked struct {
	flag.Value
	name   string
	failed *failure
}

func (t *tracked) Set(s string) error {
	err := t.Value.Set(s)
	if err != nil {
		*t.failed = failure{t.name, s, err}
	}
	return err
}

func (t *tracked) IsBoolFlag() bool {
	b, ok := t.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (t *tracked) Get() any { return t.Value.(flag.Getter).Get() }

// parseArgs parses the command line, turning the flag package's errors
// into [UsageError]s that name the flag.
func parseArgs(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		return err
	default:
		var failed *failure
		fs.VisitAll(func(f *flag.Flag) {
			if t := f.Value.(*tracked); t.failed.err != nil {
				failed = t.failed
			}
		})
		if failed != nil {
			return &UsageError{Key: "--" + failed.name, Message: describe(fs.Lookup(failed.name), failed.value, failed.err)}
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			return &UsageError{Key: "--" + name, Message: "no such flag (tandem serve --help lists them)"}
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return &UsageError{Key: "--" + name, Message: "needs a value"}
		}
		return &UsageError{Key: "flags", Message: msg}
	}
	if fs.NArg() > 0 {
		msg := fmt.Sprintf("unexpected %q: serve takes only flags", fs.Arg(0))
		// --pipeline false: a boolean flag takes its value after "=".
		if i := len(args) - fs.NArg() - 1; i >= 0 {
			if f := fs.Lookup(strings.TrimLeft(args[i], "-")); f != nil && f.Value.(*tracked).IsBoolFlag() {
				msg += fmt.Sprintf(" (a boolean is written --%s=%s)", f.Name, fs.Arg(0))
			}
		}
		return &UsageError{Key: "arguments", Message: msg}
	}
	return nil
}

// set gives a flag a value from the environment or the file, returning ""
// or what is wrong with the value.
func set(fs *flag.FlagSet, name, value string) string {
	if err := fs.Set(name, value); err != nil {
		return describe(fs.Lookup(name), value, err)
	}
	return ""
}

// describe says why value is not one for f, quoting it.
func describe(f *flag.Flag, value string, err error) string {
	var ve valueError
	if errors.As(err, &ve) {
		return fmt.Sprintf("%q %s", value, string(ve))
	}
	if strings.Contains(err.Error(), "out of range") {
		return fmt.Sprintf("%q is out of range", value)
	}
	switch f.Value.(flag.Getter).Get().(type) {
	case bool:
		return fmt.Sprintf("%q is not a boolean (want true or false)", value)
	case time.Duration:
		return fmt.Sprintf("%q is not a duration (want e.g. 90s, 15m, 48h)", value)
	case int, int64:
		return fmt.Sprintf("%q is not a whole number", value)
	case float64:
		return fmt.Sprintf("%q is not a number", value)
	}
	return fmt.Sprintf("%q: %v", value, err)
}

// A valueError is a [flag.Value]'s complaint about a value, to follow it.
type valueError string

func (e valueError) Error() string { return string(e) }

// listValue is a comma-separated list; setting it replaces the list.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	*l = out
	return nil
}

func (l *listValue) Get() any { return []string(*l) }

// printUsage writes --help: every flag with its value's name, help,
// environment variable, file key and default.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: tandem serve [flags]

Runs tandem: collection, the processing pipeline and the management API.

Every flag can also be set by its environment variable or by its key in the
--config file. Flags beat variables, variables beat the file. Sizes are
bytes or a number with a unit: kB, MB, GB, TB are powers of 1000 (10GB is
10000000000 bytes), KiB, MiB, GiB, TiB powers of 1024 (512MiB is 536870912
bytes). Durations are written as in Go (300ms, 90s, 1h30m), booleans true or
false, lists comma-separated.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		arg, help := flag.UnquoteUsage(f)
		if arg == "value" { // no name in back quotes
			switch f.Value.(*tracked).Value.(type) {
			case *sizeValue:
				arg = "SIZE"
			default:
				switch f.Value.(*tracked).Get().(type) {
				case time.Duration:
					arg = "DURATION"
				case int:
					arg = "N"
				case float64:
					arg = "NUMBER"
				}
			}
		}
		head := "--" + f.Name
		switch {
		case f.Value.(*tracked).IsBoolFlag():
			head += "[=true|false]"
		case arg != "":
			head += " " + arg
		}
		fmt.Fprintf(w, "  %s\n", head)
		for _, line := range wrap(help, 72) {
			fmt.Fprintf(w, "      %s\n", line)
		}
		src := envVar(f.Name)
		if f.Name != "config" {
			src += ", file key " + fileKey(f.Name)
		}
		if def := f.DefValue; def != "" {
			if _, ok := f.Value.(*tracked).Get().(time.Duration); ok {
				def = shortDuration(def)
			}
			src += ", default " + def
		}
		fmt.Fprintf(w, "      (%s)\n", src)
	})
}

// wrap breaks s into lines of at most width characters, between words.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}

// shortDuration drops the zero minutes and seconds of a duration's text:
// 168h0m0s is 168h, 30m0s is 30m.
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
