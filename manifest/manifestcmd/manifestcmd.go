// Package manifestcmd is `tandem apply` and `tandem export`: clients of a
// running node's management API that make it hold what a manifest
// declares, and write what it holds as a manifest (package manifest).
package manifestcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"tandem/manifest"
)

const applyUsage = `Usage: tandem apply -f FILE [--dry-run] [--prune] [flags]

Makes a running node hold what FILE (tandem.yaml; "-" for stdin)
declares: sources, destinations, users, tracking plans, computed traits,
audiences, identity rules and lifecycle stages, each matched by name.
--dry-run prints the plan (what would be created, changed or deleted, the
fields that differ, and the approvals each change needs) and changes
nothing. A change the node holds for approval becomes a change request
("change request chg_… filed, needs it"). Applying the same file again
changes nothing. Only --prune deletes: the node's resources of each kind
the file declares (a top-level key, an empty list included) that it does
not name. The format: docs/configuration-as-code.md.

The node is --addr (TANDEM_ADDR, default 127.0.0.1:8080); the token is
--token (TANDEM_TOKEN), else TANDEM_ADMIN_TOKEN, else the file admin.token
in --data-dir (TANDEM_DATA_DIR, default ./tandem-data). ${NAME} in a
destination's config is the environment variable NAME.

Exit codes: 0 done (or nothing to do), 1 a change failed or the node
could not be reached, 2 bad usage or an invalid file.

Flags (each also read from TANDEM_<FLAG>):
`

const exportUsage = `Usage: tandem export [-o FILE] [flags]

Writes the running node's configuration as a manifest that tandem apply
reads (to stdout, or FILE): its sources, destinations, users, tracking
plans, computed traits, audiences, identity rules and lifecycle stages.
Secrets are never written: a destination's secret becomes a reference to
an environment variable, such as ${CRM_HOOK_SECRET}, for apply to read.
The node, the token and the exit codes are as for tandem apply.

Flags (each also read from TANDEM_<FLAG>):
`

type conn struct {
	addr, token, dataDir string
}

func connFlags(fs *flag.FlagSet, env func(string, string) string, getenv func(string) string, c *conn) {
	fs.StringVar(&c.addr, "addr", env("addr", "127.0.0.1:8080"), "the node's address, HOST:PORT or a URL")
	fs.StringVar(&c.token, "token", env("token", getenv("TANDEM_ADMIN_TOKEN")), "API token (an admin's, or a role that may change what the file declares)")
	fs.StringVar(&c.dataDir, "data-dir", env("data-dir", "./tandem-data"), "data directory whose admin.token is used when no token is given")
}

func envFunc(getenv func(string) string) func(string, string) string {
	return func(name, def string) string {
		if v := getenv("TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
}

func (c conn) client(cmd string, stderr io.Writer) (*client, int) {
	if c.token == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "admin.token"))
		if err != nil {
			return nil, usageErr(stderr, cmd, "--token", "no token: give --token or TANDEM_TOKEN, or --data-dir of a node whose admin.token is readable ("+err.Error()+")")
		}
		c.token = strings.TrimSpace(string(b))
	}
	base := c.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &client{base: strings.TrimRight(base, "/"), token: c.token, hc: &http.Client{}}, 0
}

func usageErr(w io.Writer, cmd, what, msg string) int {
	fmt.Fprintf(w, "tandem %s: %s: %s\n", cmd, what, msg)
	return 2
}

func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (int, bool) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0, false
		}
		fmt.Fprintf(stderr, "%s: %v\nRun \"%s --help\" for the flags.\n", fs.Name(), err, fs.Name())
		return 2, false
	}
	return 0, true
}

// Apply runs `tandem apply` with the arguments after "apply" and returns
// the exit code.
func Apply(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := envFunc(getenv)
	fs := flag.NewFlagSet("tandem apply", flag.ContinueOnError)
	var c conn
	var file string
	var dry, prune bool
	fs.StringVar(&file, "f", env("file", ""), `the manifest, or "-" for stdin (required; TANDEM_FILE)`)
	fs.BoolVar(&dry, "dry-run", env("dry-run", "") == "true", "print the plan and change nothing")
	fs.BoolVar(&prune, "prune", env("prune", "") == "true", "also delete the node's resources of each declared kind that the file does not name")
	connFlags(fs, env, getenv, &c)
	if code, ok := parseFlags(fs, args, applyUsage, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, "apply", "arguments", fmt.Sprintf("unexpected %q: give the file with -f", fs.Arg(0)))
	}
	if file == "" {
		return usageErr(stderr, "apply", "-f", "required: the manifest to apply (- for stdin)")
	}
	var data []byte
	var err error
	name := file
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, manifest.MaxBytes+1))
		name = "stdin"
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return usageErr(stderr, "apply", "-f", err.Error())
	}
	m, err := manifest.Parse(name, data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cl, code := c.client("apply", stderr)
	if cl == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	lookup := func(k string) (string, bool) {
		v := getenv(k)
		return v, v != ""
	}
	a := &applier{c: cl, out: stdout, errw: stderr, file: name, getenv: lookup}
	return a.run(ctx, m, dry, prune)
}

// Export runs `tandem export` with the arguments after "export" and
// returns the exit code.
func Export(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	env := envFunc(getenv)
	fs := flag.NewFlagSet("tandem export", flag.ContinueOnError)
	var c conn
	var out string
	fs.StringVar(&out, "o", env("output", ""), "write to this file instead of stdout (TANDEM_OUTPUT)")
	connFlags(fs, env, getenv, &c)
	if code, ok := parseFlags(fs, args, exportUsage, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, "export", "arguments", fmt.Sprintf("unexpected %q", fs.Arg(0)))
	}
	cl, code := c.client("export", stderr)
	if cl == nil {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, err := readState(ctx, cl)
	if err != nil {
		fmt.Fprintf(stderr, "tandem export: %v\n", err)
		return 1
	}
	for _, k := range manifest.Kinds {
		if why, ok := st.Unread[k]; ok {
			fmt.Fprintf(stderr, "tandem export: %s left out: %s\n", k.Key, why)
		}
	}
	b, err := manifest.Export(st)
	if err != nil {
		fmt.Fprintf(stderr, "tandem export: %v\n", err)
		return 1
	}
	if out == "" {
		_, err = stdout.Write(b)
	} else {
		err = os.WriteFile(out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem export: %v\n", err)
		return 1
	}
	return 0
}

// readState reads what the node has of every kind. A kind the node does
// not show (an endpoint it lacks, a role that may not read it, a part it
// does not run) is marked unread; a node that cannot be reached or
// refuses the token is an error.
func readState(ctx context.Context, c *client) (*manifest.State, error) {
	st := manifest.NewState()
	for _, k := range manifest.Kinds {
		var items []map[string]any
		var err error
		if k.Singleton {
			var b []byte
			if _, b, err = c.do(ctx, "GET", k.Path, nil); err == nil {
				var obj map[string]any
				if err = json.Unmarshal(b, &obj); err == nil {
					items = []map[string]any{obj}
				}
			}
		} else {
			items, err = c.list(ctx, k.Path, k.Paged)
		}
		var ae *apiError
		switch {
		case err == nil:
			st.Add(k, items)
		case errors.As(err, &ae) && ae.Status == 401:
			return nil, err
		case errors.As(err, &ae) && (ae.Status == 404 || ae.Status == 405):
			st.Unread[k] = "this node has no GET " + k.Path
		case errors.As(err, &ae) && (ae.Status == 403 || ae.Status == 503):
			st.Unread[k] = fmt.Sprintf("GET %s: %v", k.Path, err)
		default:
			return nil, fmt.Errorf("GET %s: %w", k.Path, err)
		}
	}
	return st, nil
}
