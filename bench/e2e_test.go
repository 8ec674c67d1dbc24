package bench

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/event"
)

// TestE2ETemplate: the e2e bodies parse whole, every request brings new
// people and messageIds, and each person is an anonymous visitor who
// identifies with the asked number of identifiers.
func TestE2ETemplate(t *testing.T) {
	for _, tc := range []struct{ batch, per, ids int }{{100, 10, 3}, {100, 10, 2}, {25, 10, 3}, {7, 1, 2}, {20, 5, 1}, {3, 50, 3}} {
		g := newE2EGenerator("abcd1234", 2, tc.batch, tc.per, tc.ids, time.Now())
		seenMsg := map[string]bool{}
		seenUser := map[string]bool{}
		for r := 0; r < 3; r++ {
			for _, tpl := range g.templates {
				body := tpl.next()
				req, err := event.ParseBatch(body, time.Now())
				if err != nil {
					t.Fatalf("%+v: %v", tc, err)
				}
				if len(req.Problems) > 0 || len(req.Events) != tc.batch {
					t.Fatalf("%+v: %d events, problems %+v", tc, len(req.Events), req.Problems)
				}
				people := map[string]bool{}
				identifies := 0
				for _, e := range req.Events {
					if seenMsg[e.MessageID] {
						t.Fatalf("%+v: messageId %q repeated", tc, e.MessageID)
					}
					seenMsg[e.MessageID] = true
					switch {
					case tc.ids == 1:
						if e.Type != "track" || e.UserID == "" || e.AnonymousID != "" {
							t.Fatalf("%+v: %s with user %q anon %q", tc, e.Type, e.UserID, e.AnonymousID)
						}
					case e.Type == "page":
						if e.AnonymousID == "" || e.UserID != "" {
							t.Fatalf("%+v: page with user %q anon %q", tc, e.UserID, e.AnonymousID)
						}
					case e.Type == "identify":
						identifies++
						hasEmail := bytes.Contains(e.Raw, []byte(`"email"`))
						if e.AnonymousID == "" || e.UserID == "" || hasEmail != (tc.ids == 3) {
							t.Fatalf("%+v: identify %s", tc, e.Raw)
						}
					default:
						if e.Type != "track" || e.AnonymousID == "" || e.UserID == "" {
							t.Fatalf("%+v: %s with user %q anon %q", tc, e.Type, e.UserID, e.AnonymousID)
						}
					}
					if e.UserID != "" {
						people[e.UserID] = true
					}
				}
				wantPeople := (tc.batch + tc.per - 1) / tc.per
				if len(people) != wantPeople {
					t.Fatalf("%+v: %d people in a request, want %d", tc, len(people), wantPeople)
				}
				if tc.ids > 1 && identifies != wantPeople {
					t.Fatalf("%+v: %d identifies, want one per person (%d)", tc, identifies, wantPeople)
				}
				for u := range people {
					if seenUser[u] {
						t.Fatalf("%+v: person %q in two requests", tc, u)
					}
					seenUser[u] = true
				}
			}
		}
	}
}

// TestE2ETemplateLogChunk: the log baseline patches the e2e entries'
// identifiers along with their messageIds.
func TestE2ETemplateLogChunk(t *testing.T) {
	g := newE2EGenerator("feedf00d", 1, 10, 5, 3, time.Now())
	chunk, err := encodeChunk(g.templates[0].patch.b, idPrefix(g.runID, 0), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	chunk.set(7)
	if bytes.Contains(chunk.b, []byte(idPrefix(g.runID, 0)+"000000000000")) {
		t.Fatalf("a counter field was not patched: %s", chunk.b)
	}
}

func TestJudgeStep(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	// samples: 11 (mkN: secs+1) readings a second apart, accepting
	// accepted/s and storing stored/s, lag seconds from lagAt.
	mkN := func(secs int, accepted, stored float64, lagAt func(i int) float64) []sample {
		var s []sample
		for i := 0; i <= secs; i++ {
			s = append(s, sample{At: t0.Add(time.Duration(i) * time.Second), Accepted: accepted * float64(i), Stored: stored * float64(i),
				LagSeconds: lagAt(i), Lag: 10 * lagAt(i), RSS: float64(100+i) * (1 << 20)})
		}
		return s
	}
	mk := func(accepted, stored float64, lagAt func(i int) float64) []sample {
		return mkN(10, accepted, stored, lagAt)
	}
	for _, tc := range []struct {
		name     string
		offered  float64
		samples  []sample
		flat     bool
		verdict  string
		lagStart float64
		lagEnd   float64
	}{
		{"steady", 1000, mk(1000, 1000, func(int) float64 { return 0.5 }), true, "flat", 0.5, 0.5},
		{"jitter within slack", 1000, mk(1000, 990, func(i int) float64 { return 0.2 * float64(i%3) }), true, "flat", 0.15, 0.2},
		{"growing", 1000, mk(1000, 700, func(i int) float64 { return 0.3 * float64(i) }), false, "lag grew", 0.45, 2.55},
		{"collection short", 1000, mk(900, 900, func(int) float64 { return 0 }), false, "collection fell short: 90%", 0, 0},
		// A pipeline that keeps up, committing a row group every 6 s:
		// the lag climbs a second a second and drops back, over 30 s.
		// The edges catch a tooth's bottom (0, 1, 2, 3) and its top
		// (3, 4, 5, 0), more than the slack apart; the line sees no
		// trend to speak of.
		{"saw-tooth", 1000, mkN(30, 1000, 1000, func(i int) float64 { return float64(i % 6) }), true, "flat", 1.5, 3},
		// The same tooth on a lag that grows 0.1 s a second.
		// The floor's line sees 2.8 of the 3 s (a line through the raw
		// samples saw 3.6: the last tooth's top pulled it up).
		{"saw-tooth growing", 1000, mkN(30, 1000, 900, func(i int) float64 { return float64(i%6) + 0.1*float64(i) }), false, "lag grew 2.8", 1.65, 5.85},
		// Teeth of 10 s and 9 s high over a minute that ends at the top
		// of one: a line through the raw samples grows by more than the
		// slack (1.6 s: the tooth at the end pulls it up); the floor stays 0.
		{"saw-tooth ending on a top", 1000, mkN(59, 1000, 1000, func(i int) float64 { return float64(i % 10) }), true, "flat", 1.5, 7.5},
		// A lag whose floor climbs 0.05 s a second under 5-s teeth.
		{"slow climb under teeth", 1000, mkN(60, 1000, 950, func(i int) float64 { return float64(i%5) + 0.05*float64(i) }), false, "lag grew 3.0", 1.575, 5.175},
	} {
		st := &E2EStep{OfferedPerSec: tc.offered}
		end := tc.samples[len(tc.samples)-1].At
		if err := judgeStep(st, tc.samples, t0, end, time.Second); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if st.Flat != tc.flat || !strings.HasPrefix(st.Verdict, tc.verdict) {
			t.Errorf("%s: flat %v verdict %q, want %v %q", tc.name, st.Flat, st.Verdict, tc.flat, tc.verdict)
		}
		if d := st.LagStartSeconds - tc.lagStart; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: lag start %v, want %v", tc.name, st.LagStartSeconds, tc.lagStart)
		}
		if d := st.LagEndSeconds - tc.lagEnd; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: lag end %v, want %v", tc.name, st.LagEndSeconds, tc.lagEnd)
		}
		if rss := float64(100 + len(tc.samples) - 1); st.RSSMiB == nil || *st.RSSMiB != rss || *st.RSSMaxMiB != rss {
			t.Errorf("%s: RSS %v max %v", tc.name, st.RSSMiB, st.RSSMaxMiB)
		}
	}
	// Too few samples in the interval is an error, not a verdict.
	st := &E2EStep{OfferedPerSec: 1000}
	if err := judgeStep(st, mk(1000, 1000, func(int) float64 { return 0 })[:1], t0, t0.Add(10*time.Second), time.Second); err == nil {
		t.Error("one sample judged")
	}
}

// TestE2EShape: the pipeline's shape over a step comes from the
// differences of its counters between the interval's first and last
// scrape, the waiting share from every scrape.
func TestE2EShape(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	scrape := func(i int, batches, records, stored, commits, deferrals, deferring, stateSecs float64) sample {
		return sample{At: t0.Add(time.Duration(i) * time.Second), Stored: stored, All: map[string]float64{
			`tandem_pipeline_stage_seconds_count{stage="write"}`:  batches,
			"tandem_pipeline_records_total":                       records,
			`tandem_pipeline_stage_seconds_count{stage="commit"}`: commits,
			"tandem_pipeline_deferrals_total":                     deferrals,
			"tandem_pipeline_deferring":                           deferring,
			`tandem_pipeline_stage_seconds_sum{stage="state"}`:    stateSecs,
		}}
	}
	in := []sample{
		scrape(0, 10, 100, 50_000, 2, 1, 0, 1),
		scrape(1, 15, 150, 70_000, 2, 2, 1, 1.5),
		scrape(2, 20, 200, 90_000, 3, 2, 1, 2),
		scrape(3, 30, 300, 150_000, 4, 2, 0, 3),
	}
	sh := e2eShape(in)
	if sh == nil {
		t.Fatal("no shape")
	}
	want := E2EShape{Batches: 20, RecordsPerBatch: 10, EventsPerBatch: 5000, EventsPerRecord: 500,
		Commits: 2, EventsPerCommit: 50_000, Deferrals: 1, DeferringShare: 0.5}
	got := *sh
	got.StageMicros = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("shape %+v, want %+v", got, want)
	}
	if v := sh.StageMicros["state"]; v < 19.99 || v > 20.01 {
		t.Errorf("state %v µs an event, want 20 (2 s over 100,000 events)", v)
	}
	// A node without the pipeline's counters has no shape.
	if e2eShape([]sample{{At: t0, All: map[string]float64{}}, {At: t0.Add(time.Second), All: map[string]float64{}}}) != nil {
		t.Error("shape without counters")
	}
}
