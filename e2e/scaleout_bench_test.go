package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// benchReport is the part of `tandem bench ingest --json` read here.
type benchReport struct {
	Phases []struct {
		Name         string           `json:"name"`
		Events       int64            `json:"events"`
		Seconds      float64          `json:"seconds"`
		EventsPerSec float64          `json:"eventsPerSec"`
		P50Ms        float64          `json:"p50Ms"`
		P99Ms        float64          `json:"p99Ms"`
		Errors       map[string]int64 `json:"errors"`
	} `json:"phases"`
	Pipeline *struct {
		StoredPerSec float64 `json:"storedPerSec"`
		LagEnd       float64 `json:"lagEndRecords"`
		LagMax       float64 `json:"lagMaxRecords"`
		Growing      bool    `json:"lagGrowing"`
		Error        string  `json:"error"`
	} `json:"pipeline"`
	Failures []string `json:"failures"`
}

// runBenchIngest drives node s with `tandem bench ingest --target`.
func runBenchIngest(t *testing.T, s *server, flags ...string) benchReport {
	t.Helper()
	args := append([]string{"bench", "ingest", "--target", s.url, "--write-key", s.writeKey, "--json"}, flags...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	dieWithTest(cmd)
	if err := cmd.Run(); err != nil {
		t.Fatalf("tandem bench ingest: %v\n%s", err, tail(stderr.String(), 20))
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("tandem bench ingest --json: %v in %.300s", err, stdout.String())
	}
	if len(r.Failures) > 0 || len(r.Phases) == 0 || r.Phases[0].Name != "tandem" {
		t.Fatalf("tandem bench ingest: failures %v, phases %d\n%s", r.Failures, len(r.Phases), tail(stderr.String(), 20))
	}
	return r
}

// benchLine is one row of the figures table.
func benchLine(name string, r benchReport, stored, distinct int64, storedIn time.Duration) string {
	p := r.Phases[0]
	pipe := "pipeline metrics unavailable"
	if r.Pipeline != nil && r.Pipeline.Error == "" {
		// bench ingest's verdict: keeping up means storing at least 95%
		// of the accepted rate during the load.
		keeps := "keeping up"
		if r.Pipeline.Growing {
			keeps = "falling behind"
		}
		pipe = fmt.Sprintf("%.0f stored/s during ingest (%.0f%%), lag end %.0f max %.0f records (%s)",
			r.Pipeline.StoredPerSec, 100*r.Pipeline.StoredPerSec/p.EventsPerSec, r.Pipeline.LagEnd, r.Pipeline.LagMax, keeps)
	}
	return fmt.Sprintf("%-26s | %8.0f events/s | p50 %6.1f ms | p99 %6.1f ms | %8d accepted, errors %v | %s | stored %d (%d distinct) %s after the load",
		name, p.EventsPerSec, p.P50Ms, p.P99Ms, p.Events, p.Errors, pipe, stored, distinct, storedIn.Round(time.Millisecond))
}

// TestScaleOutBench runs `tandem bench ingest` against one tandem node on
// the embedded default and then against one node on the server backends
// (three NATS servers, PostgreSQL, ClickHouse), in one session on one
// machine, and checks that each stored every accepted event once. It
// reports figures and fails only on loss or duplicates; it is opt-in:
//
//	TANDEM_BENCH_SCALEOUT=1 go test -count=1 -run TestScaleOutBench -v ./e2e/
//
// TANDEM_BENCH_DURATION sets the load phase (default 10s); TANDEM_BENCH_FLAGS
// adds flags of bench ingest (e.g. "--rate 20000 --clients 8").
func TestScaleOutBench(t *testing.T) {
	if os.Getenv("TANDEM_BENCH_SCALEOUT") == "" {
		t.Skip("opt-in benchmark: set TANDEM_BENCH_SCALEOUT=1")
	}
	flags := []string{"--duration", "10s", "--skip-baselines", "--skip-drain"}
	if d := os.Getenv("TANDEM_BENCH_DURATION"); d != "" {
		flags[1] = d
	}
	flags = append(flags, strings.Fields(os.Getenv("TANDEM_BENCH_FLAGS"))...)
	t.Logf("bench ingest flags: %s", strings.Join(flags, " "))
	nodeFlags := []string{"--source-rate-limit", "0"} // as bench ingest's own servers

	// (a) The embedded default.
	emb := startServer(t, "", serverOpts{args: nodeFlags})
	ra := runBenchIngest(t, emb, flags...)
	start := time.Now()
	emb.waitDrained(5 * time.Minute)
	storedIn := time.Since(start)
	stored, err1 := emb.metric("tandem_pipeline_events_stored_total")
	dups, err2 := emb.metric("tandem_pipeline_events_duplicate_total")
	if err1 != nil || err2 != nil {
		t.Fatalf("metrics: %v %v", err1, err2)
	}
	if int64(stored) < ra.Phases[0].Events || dups != 0 {
		t.Errorf("embedded: %d events accepted, %v stored, %v duplicates skipped", ra.Phases[0].Events, stored, dups)
	}
	lineA := benchLine("embedded (1 node)", ra, int64(stored), int64(stored), storedIn)
	t.Log(lineA)
	emb.kill()

	// (b) The server backends.
	so := startScaleOut(t, 1, nodeFlags...)
	rb := runBenchIngest(t, so.nodes[0], flags...)
	start = time.Now()
	waitConsumerDone(t, so.nats.URL(), 5*time.Minute)
	storedIn = time.Since(start)
	counts := clickHouseCounts(t, so.b.Events, "")
	var rows int64
	for _, n := range counts {
		rows += int64(n)
	}
	if rows != int64(len(counts)) || int64(len(counts)) < rb.Phases[0].Events {
		t.Errorf("server backends: %d events accepted, %d rows in ClickHouse, %d distinct messageIds", rb.Phases[0].Events, rows, len(counts))
	}
	lineB := benchLine("3 NATS + PG + CH (1 node)", rb, rows, int64(len(counts)), storedIn)
	t.Log(lineB)
	t.Logf("side by side:\n%s\n%s", lineA, lineB)
}
