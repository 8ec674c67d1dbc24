// Package importcmd is `tandem import`: it sends a CSV or NDJSON file (or
// stdin) to a running tandem server's import API and shows the progress.
//
// The command creates the import with POST /api/v1/imports, giving the
// SHA-256 of the file as its key, streams the file to PUT
// /api/v1/imports/{id}/data and polls GET /api/v1/imports/{id} meanwhile.
// Because the key names the file's content, running the same command
// again after an interruption (Ctrl-C, a lost connection, a server
// restart) finds the same import and resumes after the rows already
// safely in the event log; rows are never imported twice (each has a
// deterministic messageId).
package importcmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"time"

	"tandem/imports"
)

const usage = `Usage: tandem import --source NAME|ID [--format csv|ndjson] [--mapping FILE] [flags] FILE|-

Imports a CSV or NDJSON file (or stdin, "-") into a source of a running
tandem server, through its import API. Running the same command again after
an interruption resumes it; nothing is ever imported twice.

The server is --addr (TANDEM_ADDR, default 127.0.0.1:8080); the token is
--token (TANDEM_TOKEN), else TANDEM_ADMIN_TOKEN, else the file admin.token
in --data-dir (TANDEM_DATA_DIR, default ./tandem-data).

Exit codes: 0 the import completed (rows that failed are listed and kept in
the quarantine), 1 it did not complete, 2 bad usage or configuration.

Flags (each also read from TANDEM_<FLAG>, e.g. TANDEM_MAX_ERRORS):
`

type options struct {
	source, format, mapping, addr, token, dataDir, delimiter, encoding, progress string
	maxErrors                                                                    int
	restart                                                                      bool
}

// Main runs `tandem import` with the arguments after "import" and returns
// the exit code.
func Main(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("tandem import", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	env := func(name, def string) string {
		if v := getenv("TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&o.source, "source", env("source", ""), "id or name of the source to import into (required)")
	fs.StringVar(&o.format, "format", env("format", ""), "csv or ndjson (default: the mapping's format, else by file extension, else csv)")
	fs.StringVar(&o.mapping, "mapping", env("mapping", ""), "mapping file, YAML or JSON (see docs/import.md); needed for CSV")
	fs.StringVar(&o.addr, "addr", env("addr", "127.0.0.1:8080"), "server address, HOST:PORT or a URL")
	fs.StringVar(&o.token, "token", env("token", getenv("TANDEM_ADMIN_TOKEN")), "API token (a user with the imports:run permission)")
	fs.StringVar(&o.dataDir, "data-dir", env("data-dir", "./tandem-data"), "data directory whose admin.token is used when no token is given")
	fs.StringVar(&o.delimiter, "delimiter", env("delimiter", ""), `CSV delimiter, one character or "tab" (overrides the mapping)`)
	fs.StringVar(&o.encoding, "encoding", env("encoding", ""), "CSV encoding: utf-8, latin-1 or windows-1252 (overrides the mapping)")
	fs.StringVar(&o.progress, "progress", env("progress", "auto"), "auto, bar, plain or none")
	fs.BoolVar(&o.restart, "restart", env("restart", "") == "true", "start over instead of resuming an unfinished import of the same file")
	maxDefault := fmt.Sprint(imports.DefaultMaxErrors)
	fs.IntVar(&o.maxErrors, "max-errors", 0, "failed rows tolerated before the import aborts; -1 for no limit (default "+maxDefault+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "tandem import: %v\nRun \"tandem import --help\" for the flags.\n", err)
		return 2
	}
	if !flagGiven(fs, "max-errors") {
		v := env("max-errors", maxDefault)
		if _, err := fmt.Sscan(v, &o.maxErrors); err != nil {
			return usageErr(stderr, "TANDEM_MAX_ERRORS", "must be an integer, -1 for no limit")
		}
	}
	if fs.NArg() != 1 {
		return usageErr(stderr, "FILE", "give exactly one file to import, or - for stdin")
	}
	if o.source == "" {
		return usageErr(stderr, "--source", "required: the id or name of the source to import into")
	}
	if o.maxErrors < -1 {
		return usageErr(stderr, "--max-errors", "must be -1 (no limit) or more")
	}
	switch o.format {
	case "", "csv", "ndjson":
	default:
		return usageErr(stderr, "--format", `must be "csv" or "ndjson"`)
	}
	switch o.progress {
	case "auto", "bar", "plain", "none":
	default:
		return usageErr(stderr, "--progress", "must be auto, bar, plain or none")
	}
	if o.delimiter != "" {
		if _, ok := imports.ParseDelimiter(o.delimiter); !ok {
			return usageErr(stderr, "--delimiter", `must be one character or "tab", not a quote or line break`)
		}
	}
	if o.encoding != "" && imports.NormalizeEncoding(o.encoding) == "" {
		return usageErr(stderr, "--encoding", "must be utf-8, latin-1 or windows-1252")
	}
	var mappingDoc []byte
	var mapping *imports.Mapping
	if o.mapping != "" {
		b, err := os.ReadFile(o.mapping)
		if err != nil {
			return usageErr(stderr, "--mapping", err.Error())
		}
		if mapping, err = imports.ParseMapping(b); err != nil {
			return usageErr(stderr, "--mapping "+o.mapping, err.Error())
		}
		mappingDoc = b
	}
	file := fs.Arg(0)
	if o.format == "" && mapping != nil {
		o.format = mapping.Format
	}
	if o.format == "" {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".ndjson", ".jsonl":
			o.format = "ndjson"
		default:
			o.format = "csv"
		}
	}
	if o.format == "csv" && mapping == nil {
		return usageErr(stderr, "--mapping", "a CSV import needs a mapping file")
	}
	if o.token == "" {
		b, err := os.ReadFile(filepath.Join(o.dataDir, "admin.token"))
		if err != nil {
			return usageErr(stderr, "--token", "no token: give --token or TANDEM_TOKEN, or --data-dir of a server whose admin.token is readable ("+err.Error()+")")
		}
		o.token = strings.TrimSpace(string(b))
	}
	base := o.addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	base = strings.TrimRight(base, "/")

	// The data, its size and its key.
	var data io.Reader = stdin
	size := int64(-1)
	key := ""
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usageErr(stderr, "FILE", err.Error())
		}
		defer f.Close()
		h := sha256.New()
		if size, err = io.Copy(h, f); err != nil {
			fmt.Fprintf(stderr, "tandem import: read %s: %v\n", file, err)
			return 1
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			fmt.Fprintf(stderr, "tandem import: read %s: %v\n", file, err)
			return 1
		}
		key = "sha256:" + hex.EncodeToString(h.Sum(nil))
		data = f
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c := &client{base: base, token: o.token, hc: &http.Client{}}
	spec := map[string]any{"source": o.source, "format": o.format, "key": key, "maxErrors": o.maxErrors,
		"delimiter": o.delimiter, "encoding": o.encoding, "restart": o.restart, "size": max(size, 0)}
	if mappingDoc != nil {
		spec["mapping"] = string(mappingDoc)
	}
	var st imports.Status
	if code, err := c.do(ctx, "POST", "/api/v1/imports", spec, &st); err != nil {
		fmt.Fprintf(stderr, "tandem import: %v\n", err)
		return code
	}
	if st.Status == imports.Completed && !o.restart {
		fmt.Fprintf(stdout, "import %s: this file was imported already (%d rows, %d failed); nothing to do (--restart imports it again; nothing is duplicated)\n",
			st.ID, st.RowsImported, st.RowsFailed)
		return 0
	}
	if st.Resume.Rows > 0 {
		fmt.Fprintf(stderr, "resuming import %s after line %d (%d rows already done)\n", st.ID, st.Resume.Line, st.Resume.Rows)
	}

	mode := o.progress
	if mode == "auto" {
		mode = "plain"
		if isTerminal(stderr) {
			mode = "bar"
		}
	}
	p := newProgress(stderr, mode, size)
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		every := 250 * time.Millisecond
		if mode == "plain" {
			every = 2 * time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				var cur imports.Status
				if _, err := c.do(pollCtx, "GET", "/api/v1/imports/"+st.ID, nil, &cur); err == nil {
					p.show(cur)
				}
			}
		}
	}()
	var final imports.Status
	code, err := c.upload(ctx, "/api/v1/imports/"+st.ID+"/data", data, size, &final)
	stopPoll()
	<-polled
	p.done()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "tandem import: stopped; run the same command again to resume import %s\n", st.ID)
			return 1
		}
		fmt.Fprintf(stderr, "tandem import: %v\n%s\n", err, afterFailure(err, st.ID))
		return code
	}
	return report(stdout, stderr, final)
}

// afterFailure says what to do after the data upload failed with err: run
// the same command again only where that can help (the server or the
// connection failed); for data or a mapping the server refused, a rerun
// would fail the same way, so it says what to fix.
func afterFailure(err error, id string) string {
	var he *httpError
	if !errors.As(err, &he) || he.Status >= 500 {
		return fmt.Sprintf("(run the same command again to resume import %s)", id)
	}
	switch {
	case he.Code == "invalid_mapping" || he.Code == "invalid_file":
		return "(the file does not fit the mapping: fix the mapping or the file, then run the command again; " +
			"a changed file or mapping is a new import, and rows imported already are not duplicated)"
	case he.Status == 409:
		return fmt.Sprintf("(import %s is running from another command; wait for it, then run this command again to resume or check it)", id)
	case he.Status == 401 || he.Status == 403:
		return "(fix the credentials or the source's approval, then run the same command again to resume)"
	}
	return "(fix what the message names, then run the command again; rows imported already are not duplicated)"
}

// report prints how an import ended and returns the exit code.
func report(stdout, stderr io.Writer, st imports.Status) int {
	fmt.Fprintf(stdout, "import %s %s: %s rows imported, %s failed", st.ID, st.Status, commas(st.RowsImported), commas(st.RowsFailed))
	if st.RowsSkipped > 0 {
		fmt.Fprintf(stdout, " (%s done by an earlier attempt)", commas(st.RowsSkipped))
	}
	if st.RowsPerSecond > 0 {
		fmt.Fprintf(stdout, "; %s rows/s", commas(int64(st.RowsPerSecond)))
	}
	fmt.Fprintln(stdout)
	for i, e := range st.Errors {
		if i == 20 {
			fmt.Fprintf(stderr, "  … more: GET /api/v1/imports/%s/errors\n", st.ID)
			break
		}
		fmt.Fprintf(stderr, "  %s: %s\n", e.Error(), e.Code)
	}
	if st.RowsFailed > 0 {
		fmt.Fprintf(stderr, "failed rows are kept with their original bytes in the quarantine (GET /api/v1/quarantine?source=%s)\n", st.SourceID)
	}
	if st.Status == imports.Completed {
		return 0
	}
	if st.Error != nil {
		fmt.Fprintf(stderr, "tandem import: %s: %s\n", st.Error.Code, st.Error.Message)
		if st.Error.Code == "resume_mismatch" {
			fmt.Fprintln(stderr, "tandem import: run with --restart to import the file from its start (nothing is duplicated)")
		}
	}
	return 1
}

func usageErr(w io.Writer, what, msg string) int {
	fmt.Fprintf(w, "tandem import: %s: %s\n", what, msg)
	return 2
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// client talks to the management API.
type client struct {
	base, token string
	hc          *http.Client
}

// httpError is an error answer of the server.
type httpError struct {
	Status int
	Code   string // the error shape's code
	text   string
}

func (e *httpError) Error() string { return e.text }

// apiError is the API's one error shape.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// do sends a JSON request and decodes the answer into out. On failure it
// returns the exit code: 2 for what the user must fix (bad input,
// credentials, role), 1 otherwise.
func (c *client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 1, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 2, fmt.Errorf("--addr: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *client) upload(ctx context.Context, path string, data io.Reader, size int64, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "PUT", c.base+path, data)
	if err != nil {
		return 2, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return c.send(req, out)
}

func (c *client) send(req *http.Request, out any) (int, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 1, fmt.Errorf("cannot reach the server at %s (--addr): %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 1, err
	}
	if resp.StatusCode >= 300 {
		var e apiError
		_ = json.Unmarshal(b, &e)
		msg := e.Error.Message
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		if e.Error.Field != "" {
			msg = e.Error.Field + ": " + msg
		}
		code := 1
		switch resp.StatusCode {
		case 400, 401, 403, 404:
			code = 2
		}
		if resp.StatusCode == 401 {
			msg += " (check --token / TANDEM_TOKEN)"
		}
		return code, &httpError{Status: resp.StatusCode, Code: e.Error.Code, text: fmt.Sprintf("%s: %s", resp.Status, msg)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 1, fmt.Errorf("unexpected answer from the server: %w", err)
	}
	return 0, nil
}
