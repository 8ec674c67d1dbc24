// Package auditcmd is `tandem audit`: today its one subcommand, `verify`,
// which opens the state store a server uses (the embedded SQLite file in
// --data-dir, or PostgreSQL at --state), walks the audit log's hash chain
// and names the first broken entry. It only reads: it never migrates and
// may run beside live servers.
package auditcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tandem/audit"
	"tandem/statestore"
	"tandem/statestore/postgres"
	"tandem/statestore/sqlite"
)

const usage = `Usage: tandem audit verify [--data-dir DIR | --state postgres://…] [--json] [--progress auto|plain|none]

Checks the audit log's hash chain: every entry's hash, the sequence with no
gaps, and each entry's link to the one before. It names the first broken
entry and what is wrong with it: "edited" (its content does not match its
hash), "deleted" (entries are missing) or "reordered" (it is not where it
was written, or does not link to the entry before it).

The state store is the one "tandem serve" uses with the same flags: the
embedded SQLite file in --data-dir (TANDEM_DATA_DIR, default ./tandem-data),
or PostgreSQL at --state (TANDEM_STATE). Nothing is changed; it may run
while servers are running (entries appended meanwhile are checked next time).

Exit codes: 0 the chain is intact, 1 it is broken or could not be read,
2 bad usage or configuration.

Flags (each also read from TANDEM_<FLAG>):
`

// Main runs `tandem audit` with the arguments after "audit" and returns the
// exit code.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprint(stderr, "tandem audit: want a subcommand: verify\n\n"+usage)
		return 2
	}
	fs := flag.NewFlagSet("tandem audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := func(name, def string) string {
		if v := getenv("TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	dataDir := fs.String("data-dir", env("data-dir", "./tandem-data"), "data directory of the embedded state store (state.db)")
	state := fs.String("state", env("state", ""), "state store: empty for the embedded SQLite in --data-dir, or a postgres:// URL")
	asJSON := fs.Bool("json", env("json", "") == "true", "print the result as JSON on stdout")
	progress := fs.String("progress", env("progress", "auto"), "auto (every few seconds on long chains), plain (after every page of entries) or none; on stderr")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tandem audit verify: %v\nRun \"tandem audit verify --help\" for the flags.\n", err)
		return 2
	}
	if fs.NArg() != 0 {
		return usageErr(stderr, "arguments", "verify takes no arguments, only flags")
	}
	switch *progress {
	case "auto", "plain", "none":
	default:
		return usageErr(stderr, "--progress", "must be auto, plain or none")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	db, code := open(ctx, *dataDir, *state, stderr)
	if db == nil {
		return code
	}
	defer db.Close()
	if ok, err := audit.Exists(ctx, db); err != nil {
		fmt.Fprintf(stderr, "tandem audit verify: %v\n", err)
		return 1
	} else if !ok {
		fmt.Fprintln(stderr, "tandem audit verify: this state store has no audit log (no server with the audit log has run on it)")
		return 1
	}

	var report func(done, total int64)
	if *progress != "none" {
		last := time.Now()
		report = func(done, total int64) {
			if *progress == "auto" && (time.Since(last) < 2*time.Second || done == total) {
				return
			}
			last = time.Now()
			fmt.Fprintf(stderr, "tandem audit verify: %d of %d entries checked\n", done, total)
		}
	}
	rep, err := audit.New(db).Verify(ctx, report)
	if err != nil {
		fmt.Fprintf(stderr, "tandem audit verify: %v\n", err)
		return 1
	}
	if *asJSON {
		out := struct {
			Intact bool `json:"intact"`
			audit.Report
		}{rep.Broken == nil, rep}
		_ = json.NewEncoder(stdout).Encode(out)
	} else if rep.Broken == nil {
		fmt.Fprintf(stdout, "audit log intact: %d entries, head %d, hash %s\n", rep.Entries, rep.Head, rep.Hash)
	} else {
		fmt.Fprintf(stdout, "audit log BROKEN at entry %d (%s): %s\n%d entries before it are intact; the head is at entry %d.\n",
			rep.Broken.Seq, rep.Broken.Kind, rep.Broken.Message, rep.Entries, rep.Head)
	}
	if rep.Broken != nil {
		return 1
	}
	return 0
}

// open opens the state store the flags name, or reports why not and
// returns the exit code.
func open(ctx context.Context, dataDir, state string, stderr io.Writer) (*statestore.DB, int) {
	if state == "" {
		path := filepath.Join(dataDir, "state.db")
		if _, err := os.Stat(path); err != nil {
			// Opening would create an empty store; say what is missing.
			return nil, usageErr(stderr, "--data-dir", fmt.Sprintf("no state store at %s (%v)", path, errors.Unwrap(err)))
		}
		db, err := sqlite.Open(path)
		if err != nil {
			fmt.Fprintf(stderr, "tandem audit verify: %v\n", err)
			return nil, 1
		}
		return db, 0
	}
	if u, err := url.Parse(state); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL is not repeated: it may hold a password.
		return nil, usageErr(stderr, "--state", "want empty (embedded SQLite) or a postgres:// or postgresql:// URL")
	}
	db, err := postgres.Open(ctx, state) // its errors hide the password
	if err != nil {
		fmt.Fprintf(stderr, "tandem audit verify: %v\n", err)
		return nil, 1
	}
	return db, 0
}

func usageErr(w io.Writer, what, msg string) int {
	fmt.Fprintf(w, "tandem audit verify: %s: %s\n", what, msg)
	return 2
}
