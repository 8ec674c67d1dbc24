package attribution

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"tandem/analytics"
)

func TestSplitExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 1 + r.IntN(12)
		ws := make([]uint64, n)
		var sum uint64
		for i := range ws {
			if r.IntN(4) > 0 {
				ws[i] = r.Uint64N(1 << 40)
			}
			sum += ws[i]
		}
		total := r.Uint64N(1 << 50)
		got := Split(total, ws)
		var s uint64
		for i, g := range got {
			s += g
			if sum == 0 {
				continue
			}
			// Each share is its quota rounded down or up.
			exact := float64(total) * float64(ws[i]) / float64(sum)
			if float64(g) < exact-1.001 || float64(g) > exact+1.001 {
				t.Fatalf("Split(%d, %v)[%d] = %d, quota %.3f", total, ws, i, g, exact)
			}
		}
		if s != total {
			t.Fatalf("Split(%d, %v) sums to %d", total, ws, s)
		}
	}
}

func TestSplitTies(t *testing.T) {
	for _, c := range []struct {
		total uint64
		ws    []uint64
		want  string
	}{
		{100, []uint64{1, 1, 1}, "[34 33 33]"},
		{2, []uint64{1, 1, 1}, "[1 1 0]"},
		{1000, []uint64{2, 1, 2}, "[400 200 400]"},
		{7, []uint64{0, 0}, "[4 3]"}, // no weight: even
		{5, []uint64{0, 3}, "[0 5]"},
	} {
		if got := fmt.Sprint(Split(c.total, c.ws)); got != c.want {
			t.Errorf("Split(%d, %v) = %s, want %s", c.total, c.ws, got, c.want)
		}
	}
}

// memSource is a Source over journeys held in memory, their Marks in
// marks.
type memSource struct {
	journeys []Journey
	marks    MarkSet
}

func (m *memSource) Journeys(ctx context.Context, spec ScanSpec, fn func(*Journey) error) error {
	for i := range m.journeys {
		m.journeys[i].Marks = m.marks.List
		if err := fn(&m.journeys[i]); err != nil {
			return err
		}
	}
	return nil
}

// TestAttributeExactSums checks on random journeys that every model's
// credits for each conversion sum exactly to its value and to one
// conversion: each random case holds one conversion, so the result's
// totals are that conversion's.
func TestAttributeExactSums(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cfg := DefaultConfig()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	mediums := []string{"cpc", "email", "display", "social", "affiliate", "weird"}
	for c := range 300 {
		src := &memSource{}
		for p := range 1 + r.IntN(4) {
			var j Journey
			for range r.IntN(8) {
				m := Mark{Type: "page", SourceID: "web", Medium: mediums[r.IntN(len(mediums))], Campaign: fmt.Sprint("c", r.IntN(3))}
				j.Events = append(j.Events, Event{T: base.Add(time.Duration(r.IntN(20*24)) * time.Hour).UnixMicro(), Mark: src.marks.ID(&m)})
			}
			if p == 0 {
				v := fmt.Sprintf("%d.%02d", r.IntN(100000), r.IntN(100))
				j.Events = append(j.Events, Event{T: base.Add(20 * 24 * time.Hour).UnixMicro(), Conversion: true, Value: MinorUnits(v)})
			}
			src.journeys = append(src.journeys, j)
		}
		q := Query{Conversion: Conversion{Event: "Order Completed", Value: "revenue"}, By: []string{ByChannel, ByCampaign}[c%2],
			Range: analytics.Range{From: analytics.At(base), To: analytics.At(base.Add(30 * 24 * time.Hour))}}
		if err := q.Validate(base, &cfg); err != nil {
			t.Fatal(err)
		}
		res, err := cfg.Attribute(context.Background(), src, &q)
		if err != nil {
			t.Fatal(err)
		}
		if res.Conversions != 1 || len(res.Models) != len(Models) {
			t.Fatalf("case %d: %d conversions, %d models", c, res.Conversions, len(res.Models))
		}
		for _, m := range res.Models {
			var conv Share
			var val Money
			for _, cr := range m.Credits {
				conv += cr.Conversions
				val += cr.Value
			}
			if conv != 1_000_000 || val != res.Value {
				t.Fatalf("case %d model %s: %s conversions, %s of %s", c, m.Model, conv, val, res.Value)
			}
		}
	}
}

func TestMarkovFold(t *testing.T) {
	sc := newScan(nil, ByChannel)
	c := &chain{}
	hub := sc.key("hub")
	// Keys added in an order other than their names'.
	for i := MaxMarkovKeys + 9; i >= 0; i-- {
		keys := []int32{sc.key(fmt.Sprintf("k%04d", i))}
		for range i % 3 {
			keys = append(keys, hub)
		}
		c.add(keys, i%2 == 0)
	}
	other := sc.key(OtherKey)
	re, ok := c.removalEffects(sc.keys, other)
	if len(c.keys)-1 != MaxMarkovKeys {
		t.Fatalf("%d states after folding, want %d", len(c.keys)-1, MaxMarkovKeys)
	}
	if s := c.state[other]; !ok[s] || !ok[c.state[hub]] || re[c.state[hub]] <= 0 {
		t.Errorf("removal effects: other %v %v, hub %v", ok[s], re[s], re[c.state[hub]])
	}
	// Kept: hub (most touches), then the keys by name; the last ones fold.
	keyOf := func(k string) string { return sc.keys[c.keys[c.state[sc.key(k)]]] }
	if keyOf("k0509") != OtherKey || keyOf("k0000") != "k0000" || keyOf("hub") != "hub" {
		t.Errorf("keyOf: %q %q %q", keyOf("k0509"), keyOf("k0000"), keyOf("hub"))
	}
}

func TestQueryValidate(t *testing.T) {
	cfg := DefaultConfig()
	for _, c := range []struct{ json, field string }{
		{`{"conversion":{}}`, "conversion.event"},
		{`{"conversion":{"event":"x","value":"a\"b"}}`, "conversion.value"},
		{`{"conversion":{"event":"x"},"models":["lifo"]}`, "models[0]"},
		{`{"conversion":{"event":"x"},"models":["linear","linear"]}`, "models[1]"},
		{`{"conversion":{"event":"x"},"by":"device"}`, "by"},
		{`{"conversion":{"event":"x"},"lookback":"0d"}`, "lookback"},
		{`{"conversion":{"event":"x"},"lookback":"400d"}`, "lookback"},
		{`{"conversion":{"event":"x"},"halfLife":"-1h"}`, "halfLife"},
		{`{"conversion":{"event":"x"},"from":"yesterday"}`, "from"},
		{`{"conversion":{"event":"x"},"from":"2020-01-01T00:00:00Z","to":"2024-01-01T00:00:00Z"}`, "from"},
	} {
		var q Query
		if err := jsonDecode(c.json, &q); err != nil {
			t.Fatal(err)
		}
		err := q.Validate(time.Now(), &cfg)
		if fe, ok := err.(*analytics.FieldError); !ok || fe.Field != c.field {
			t.Errorf("%s: %v, want an error on %s", c.json, err, c.field)
		}
	}
	var q Query
	_ = jsonDecode(`{"conversion":{"event":"x"}}`, &q)
	if err := q.Validate(time.Now(), &cfg); err != nil || q.By != ByChannel || len(q.Models) != 6 || q.Lookback.Std() != 30*24*time.Hour || q.HalfLife.Std() != 7*24*time.Hour {
		t.Errorf("defaults: %v %+v", err, q)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg func(*Config)
		key string
	}{
		{func(c *Config) { c.Channels = []Rule{{Channel: "podcast"}} }, "attribution.channels[0]"},
		{func(c *Config) { c.Channels = []Rule{{Channel: "Podcast", Source: []string{"x"}}} }, "attribution.channels[0].channel"},
		{func(c *Config) { c.Channels = []Rule{{Source: []string{"x"}}} }, "attribution.channels[0].channel"},
		{func(c *Config) { c.Tools = []Rule{{Channel: "x", Tool: "t", Medium: []string{"x"}}} }, "attribution.tools[0].channel"},
		{func(c *Config) { c.HalfLife = 0 }, "attribution.half_life"},
	} {
		cfg := DefaultConfig()
		c.cfg(&cfg)
		err := cfg.Validate()
		if ce, ok := err.(*ConfigError); !ok || ce.Key != c.key {
			t.Errorf("%v, want an error on %s", err, c.key)
		}
	}
	if c := DefaultConfig(); c.Validate() != nil {
		t.Error("defaults do not validate")
	}
}

func TestMoneyAndShare(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Money(1234).String(), "12.34"}, {Money(1230).String(), "12.3"}, {Money(-5).String(), "-0.05"}, {Money(0).String(), "0"},
		{Share(333334).String(), "0.333334"}, {Share(2_500_000).String(), "2.5"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	if !strings.Contains(fmt.Sprint(Taxonomy), "call-centre") {
		t.Error("taxonomy")
	}
}

func jsonDecode(s string, v any) error { return json.Unmarshal([]byte(s), v) }
