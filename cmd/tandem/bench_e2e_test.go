package main

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"testing"

	"tandem/bench"
)

// asTandemEnv makes this test binary run as tandem itself: `tandem bench`
// starts its servers with os.Executable(), which in a test is this binary.
// (Not TANDEM_…: the bench strips those from its children's environment.)
const asTandemEnv = "TANDEMTEST_RUN_AS_TANDEM"

func TestMain(m *testing.M) {
	if os.Getenv(asTandemEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestBenchE2ESmoke runs `tandem bench e2e` end to end with real children
// at small rates and short steps, and checks the report's shape and that
// its figures are consistent. It asserts no performance.
func TestBenchE2ESmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several servers")
	}
	t.Setenv(asTandemEnv, "1")
	var out, errb bytes.Buffer
	code := run([]string{"bench", "e2e", "--json",
		"--clients", "2", "--batch", "20", "--events-per-profile", "5", "--identifiers", "3",
		"--duration", "4s", "--warmup", "1s", "--baseline-duration", "1s",
		"--min-rate", "200", "--max-rate", "2000", "--max-steps", "2",
		// Generous: the test checks the bench's workings, not the node's speed.
		"--lag-slack", "30s", "--marker-interval", "250ms"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	if !bytes.Contains(errb.Bytes(), []byte("markers")) {
		t.Errorf("no progress lines on stderr:\n%s", errb.String())
	}
	var rep bench.E2EReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	names := map[string]*bench.PhaseResult{}
	for _, p := range rep.Baselines {
		names[p.Name] = p
	}
	for _, n := range []string{"collect-only", "log"} {
		if p := names[n]; p == nil || p.EventsPerSec <= 0 {
			t.Errorf("baseline %s missing or empty: %+v", n, p)
		}
	}
	if runtime.GOOS == "linux" && len(rep.LoadAverage) != 2 {
		t.Errorf("load average %q, want start and end", rep.LoadAverage)
	}
	if rep.Ceiling < 200 || rep.Ceiling > 2000 {
		t.Errorf("ceiling %v outside --min-rate..--max-rate", rep.Ceiling)
	}
	if len(rep.Steps) == 0 || len(rep.Steps) > 2 {
		t.Fatalf("%d steps, want 1 or 2", len(rep.Steps))
	}
	for _, s := range rep.Steps {
		if s.OfferedPerSec < 200 || s.OfferedPerSec > 2000 {
			t.Errorf("step %d offered %v events/s, outside the flags' range", s.N, s.OfferedPerSec)
		}
		// Accepted is measured from the node's counter over the interval;
		// it cannot exceed what was offered by much (pacing, sampling).
		if s.AcceptedPerSec <= 0 || s.AcceptedPerSec > 1.5*s.OfferedPerSec || s.StoredPerSec <= 0 {
			t.Errorf("step %d: offered %v, accepted %v, stored %v events/s", s.N, s.OfferedPerSec, s.AcceptedPerSec, s.StoredPerSec)
		}
		if s.ServerCPUCores == nil || *s.ServerCPUCores <= 0 || s.RSSMiB == nil || *s.RSSMiB < 1 || *s.RSSMaxMiB < *s.RSSMiB {
			t.Errorf("step %d: CPU %v, RSS %v (max %v)", s.N, s.ServerCPUCores, s.RSSMiB, s.RSSMaxMiB)
		}
		if s.Seconds < 3 || s.Seconds > 10 {
			t.Errorf("step %d: measured %v s, want about 4", s.N, s.Seconds)
		}
		if s.ServerExit != "exit 0" {
			t.Errorf("step %d: server %s", s.N, s.ServerExit)
		}
	}
	s := rep.Sustained
	if s == nil {
		t.Fatalf("no sustained step at a few hundred events/s with 30 s of slack:\n%s", errb.String())
	}
	if !s.Flat || s.Verdict != "flat" {
		t.Errorf("sustained step not flat: %+v", s)
	}
	if s.Markers < 5 || s.MarkersVisible != s.Markers {
		t.Errorf("markers: %d of %d visible (%s)", s.MarkersVisible, s.Markers, s.MarkerError)
	}
	if s.DelayP50Ms == nil || *s.DelayP50Ms <= 0 || *s.DelayP99Ms < *s.DelayP50Ms || *s.DelayMaxMs < *s.DelayP99Ms {
		t.Errorf("delays p50 %v, p99 %v, max %v", s.DelayP50Ms, s.DelayP99Ms, s.DelayMaxMs)
	}
	if rep.OverCollectOnly == nil || *rep.OverCollectOnly <= 0 || rep.OverLog == nil {
		t.Errorf("ratios %v %v", rep.OverCollectOnly, rep.OverLog)
	}
}
