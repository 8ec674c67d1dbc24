// Command tandem is the customer data and journey platform: one binary that
// collects, joins, analyses and governs customer events.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"tandem/audit/auditcmd"
	"tandem/bench"
	"tandem/config"
	"tandem/imports/importcmd"
	"tandem/manifest/manifestcmd"
	"tandem/server"
	"tandem/version"
)

const usage = `tandem — self-hosted customer data and journey platform

Usage:
  tandem serve [--data-dir DIR] [--addr HOST:PORT] [--config FILE] [flags]
      run a node: collection, pipeline, management API
  tandem import --source NAME|ID [--format csv|ndjson] [--mapping FILE] FILE|-
      import a CSV or NDJSON file of offline touchpoints into a running node
  tandem apply -f FILE [--dry-run] [--prune]
      make a running node hold what a manifest (tandem.yaml) declares
  tandem export [-o FILE]
      write a running node's configuration as such a manifest
  tandem audit verify [--data-dir DIR | --state URL]
      check the audit log's hash chain and name the first broken entry
  tandem bench ingest|e2e|funnel|attribution|import|identity|dedup|delivery [flags]
      measure collection, a whole node's sustained end-to-end rate,
      analytics, bulk import, identity resolution, deduplication memory,
      delivery latency
  tandem version
      print the version
  tandem help
      print this

Run "tandem COMMAND --help" for a command's flags. Every flag can also be
set with an environment variable TANDEM_<FLAG> (e.g. TANDEM_DATA_DIR).

Exit status: 0 after a clean stop, 1 on a failure (a backend that cannot be
opened, a data directory in use, a failed final flush at shutdown), 2 for
bad usage or configuration.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "bench":
		return bench.Main(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "tandem", version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "import":
		return importcmd.Main(args[1:], os.Getenv, os.Stdin, stdout, stderr)
	case "audit":
		return auditcmd.Main(args[1:], os.Getenv, stdout, stderr)
	case "apply":
		return manifestcmd.Apply(args[1:], os.Getenv, os.Stdin, stdout, stderr)
	case "export":
		return manifestcmd.Export(args[1:], os.Getenv, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "tandem: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(args, os.Getenv, stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem serve: %v\n", err)
		return 2
	}
	defer bench.ChildProfile(os.Getenv, stderr)() // tandem bench ingest --cpuprofile
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := server.NewLogger(stderr, cfg.LogLevel)
	err = server.Run(ctx, cfg, logger, stdout)
	code := exitCode(err)
	if code == 1 {
		logger.Error("tandem stopped", "err", err.Error())
	}
	if err != nil {
		// Also as a plain last line, for a person at a terminal.
		fmt.Fprintf(stderr, "tandem serve: %v\n", err)
	}
	return code
}

// exitCode is serve's exit status for Run's error: 0 for a clean stop, 2
// for bad usage or configuration, 1 for anything else (a backend that
// could not be opened, such as a data directory in use or an unreachable
// server, or a failure at shutdown, such as a final flush of the event log
// that failed).
func exitCode(err error) int {
	var ue *config.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}
