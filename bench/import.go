package bench

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const importUsage = `Usage: tandem bench import [flags]

Generates a CSV file of --rows rows with three identifiers each (e-mail,
phone, CRM id) and imports it with "tandem import" (a child process) into a
fresh "tandem serve" (a child process, pipeline running, embedded default).
Reports rows/s end to end into the event log (the import command's wall
time, hashing the file included), the server's CPU and peak RSS, and the
time until the event store holds every row. A smaller run (--small rows)
on another fresh server shows that memory does not grow with the file.

Baseline from the same run: reading the same file with encoding/csv alone.

Flags:
`

func importMain(args []string, stdout, stderr io.Writer) int {
	const cmd = "tandem bench import"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	rows := fs.Int("rows", 1_000_000, "rows in the large file")
	small := fs.Int("small", 100_000, "rows in the small file (0 skips it)")
	keep := fs.Bool("keep", false, "keep the temporary directory (files, server logs)")
	if code, ok := parseFlags(fs, args, importUsage, stdout, stderr); !ok {
		return code
	}
	if *rows < 1 {
		return usageErr(stderr, cmd, "--rows", "must be positive")
	}
	if *small < 0 {
		return usageErr(stderr, cmd, "--small", "must be 0 or more")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := tempDir("import")
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	if *keep {
		fmt.Fprintf(stderr, "keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if w := tempDirWarning(dir); w != "" {
		fmt.Fprintln(stderr, "warning:", w)
	}
	sizes := []int{*rows}
	if *small > 0 {
		sizes = []int{*small, *rows}
	}
	var results []importResult
	for _, n := range sizes {
		for _, pipeline := range []bool{true, false} {
			r, err := importPhase(ctx, dir, n, pipeline, stderr)
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
				return 1
			}
			results = append(results, r)
		}
	}
	fmt.Fprintf(stdout, "%9s | %-12s | %7s | %13s | %15s | %10s | %11s | %15s | %s\n", "rows", "server", "file MB", "import rows/s",
		"csv-only rows/s", "import÷csv", "server CPU", "server peak RSS", "all in event store after")
	for _, r := range results {
		node, stored := "whole node", fmt.Sprintf("%.1f s", r.StoredAfter.Seconds())
		if !r.Pipeline {
			node, stored = "log only", "-"
		}
		fmt.Fprintf(stdout, "%9d | %-12s | %7.1f | %13.0f | %15.0f | %9.3fx | %5.2f cores | %12.0f MB | %s\n",
			r.Rows, node, float64(r.FileBytes)/1e6, r.ImportRate, r.CSVRate, r.ImportRate/r.CSVRate, r.ServerCores,
			float64(r.PeakRSS)/1e6, stored)
	}
	fmt.Fprintln(stdout, `"whole node": tandem serve as shipped, the pipeline storing into DuckDB meanwhile (its memory grows with the data it holds);`)
	fmt.Fprintln(stdout, `"log only": --pipeline=false, so the peak RSS is the import and the event log alone.`)
	return 0
}

type importResult struct {
	Rows        int
	Pipeline    bool
	FileBytes   int64
	ImportRate  float64 // rows/s, the import command's wall time
	CSVRate     float64 // rows/s, encoding/csv alone
	ServerCores float64
	PeakRSS     int64
	StoredAfter time.Duration
}

const benchMapping = `event: Purchase
key: order_id
timestamp: {column: purchased_at, format: "YYYY-MM-DD hh:mm:ss", timezone: Europe/Berlin}
identifiers: {email: email, phone: phone, crm_id: crm_id}
properties:
  order_id: order_id
  amount: {column: amount, type: number}
  store: store
channel: store
`

func writeImportFile(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "order_id,purchased_at,email,phone,crm_id,amount,store")
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "O-%d,2024-%02d-%02d %02d:%02d:%02d,customer%d@example.com,+49 30 %07d,CRM-%d,%d.%02d,store-%d\n",
			i, 1+i%12, 1+i%28, i%24, i%60, (i/60)%60, i, i, i%200000, i%900, i%100, i%40)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}

// csvRate reads the file with encoding/csv alone.
func csvRate(path string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	r := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
	r.ReuseRecord = true
	n := 0
	for {
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		n++
	}
	return float64(n-1) / time.Since(start).Seconds(), nil
}

func importPhase(ctx context.Context, dir string, rows int, pipeline bool, progress io.Writer) (importResult, error) {
	res := importResult{Rows: rows, Pipeline: pipeline}
	phase := filepath.Join(dir, fmt.Sprintf("%d-%t", rows, pipeline))
	if err := os.MkdirAll(phase, 0o755); err != nil {
		return res, err
	}
	data := filepath.Join(phase, "purchases.csv")
	mapping := filepath.Join(phase, "mapping.yaml")
	fmt.Fprintf(progress, "writing %d rows…\n", rows)
	var err error
	if res.FileBytes, err = writeImportFile(data, rows); err != nil {
		return res, err
	}
	if err := os.WriteFile(mapping, []byte(benchMapping), 0o644); err != nil {
		return res, err
	}
	if res.CSVRate, err = csvRate(data); err != nil {
		return res, err
	}
	token := newToken()
	srv, err := startServer(ctx, "tandem server", filepath.Join(phase, "data"), filepath.Join(phase, "server.log"), token,
		"--pipeline="+strconv.FormatBool(pipeline))
	if err != nil {
		return res, err
	}
	defer srv.proc.stop(30 * time.Second)
	if err := srv.createSource(ctx); err != nil {
		return res, err
	}
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	cpu0, _ := srv.proc.cpu()
	fmt.Fprintf(progress, "importing %d rows (pipeline %t)…\n", rows, pipeline)
	c := exec.CommandContext(ctx, exe, "import", "--addr", strings.TrimPrefix(srv.base, "http://"), "--token", token,
		"--source", "bench", "--mapping", mapping, "--progress", "plain", data)
	c.Env = childEnv()
	c.Stderr = progress
	start := time.Now()
	out, err := c.Output()
	took := time.Since(start)
	if err != nil {
		return res, srv.proc.failure(fmt.Errorf("tandem import: %v: %s", err, out))
	}
	cpu1, _ := srv.proc.cpu()
	res.ImportRate = float64(rows) / took.Seconds()
	res.ServerCores = (cpu1 - cpu0).Seconds() / took.Seconds()
	fmt.Fprint(progress, string(out))
	hc := &http.Client{Timeout: 10 * time.Second}
	for pipeline {
		m, err := srv.metrics(ctx, hc)
		if err != nil {
			return res, err
		}
		if m["tandem_pipeline_events_stored_total"] >= float64(rows) {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return res, errors.New("the event store did not get every row within 10 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.StoredAfter = time.Since(start)
	res.PeakRSS, err = peakRSS(srv.proc.cmd.Process.Pid)
	return res, err
}

// peakRSS reads a process's peak resident set (VmHWM) from /proc.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}
