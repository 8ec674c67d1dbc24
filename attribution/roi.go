package attribution

import (
	"cmp"
	"context"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"tandem/analytics"
)

// byToolChannel keys credits by tool and channel together, for the
// report (not a query's dimension).
const byToolChannel = "tool+channel"

const keySep = "\x1f"

// Tool is a catalogue tool as the report needs it (governance's
// catalogue, which the API reads).
type Tool struct {
	ID             string
	Name           string
	Kind           string // source or destination
	MonthlyCost    float64
	DataCategories []string
}

// ReportQuery asks what each tool and channel returned for its cost in a
// range, under one model.
type ReportQuery struct {
	Model      string
	Conversion Conversion // default the configured one
	Lookback   analytics.Duration
	analytics.Range
}

// Validate checks q, filling defaults from c; errors name the query
// parameter.
func (q *ReportQuery) Validate(now time.Time, c *Config) error {
	if q.Model == "" {
		q.Model = Linear
	}
	if !slices.Contains(Models, q.Model) {
		return fieldErr("model", "want one of %s", strings.Join(Models, ", "))
	}
	if q.Conversion.Event == "" {
		q.Conversion = c.Conversion
	}
	aq := q.query()
	if err := aq.Validate(now, c); err != nil {
		return err
	}
	q.Lookback, q.Range = aq.Lookback, aq.Range
	return nil
}

func (q *ReportQuery) query() Query {
	return Query{Conversion: q.Conversion, Lookback: q.Lookback, Models: []string{q.Model}, By: ByTool, Range: q.Range}
}

// ToolReturn is one tool's line of the report. A tool is credited with
// the touches Config.Tools gives it and, for a source, the touches that
// came through it and match no tool rule.
type ToolReturn struct {
	Tool        string `json:"tool"` // its id (or the key credited, for one not in the catalogue)
	Name        string `json:"name"`
	Kind        string `json:"kind"` // source, destination, or "" when not in the catalogue
	Cost        Money  `json:"cost"` // its monthly cost over the range
	Conversions Share  `json:"conversions"`
	Value       Money  `json:"value"`
	// CostPerConversion is Cost over Conversions (null without
	// conversions); ReturnOnSpend is Value over Cost (null without cost).
	CostPerConversion *Money   `json:"costPerConversion"`
	ReturnOnSpend     *float64 `json:"returnOnSpend"`
}

// ChannelReturn is one channel's line: its credits, and the cost of the
// tools that earned them, each tool's cost shared among its channels in
// proportion to the conversions it earned in each.
type ChannelReturn struct {
	Channel           string   `json:"channel"`
	Cost              Money    `json:"cost"`
	Conversions       Share    `json:"conversions"`
	Value             Money    `json:"value"`
	CostPerConversion *Money   `json:"costPerConversion"`
	ReturnOnSpend     *float64 `json:"returnOnSpend"`
}

// Review is a tool that receives customer data (a destination) and was
// credited with no conversion in the range.
type Review struct {
	Tool           string   `json:"tool"`
	Name           string   `json:"name"`
	Cost           Money    `json:"cost"`
	DataCategories []string `json:"dataCategories"`
}

// Report answers a ReportQuery.
type Report struct {
	From        time.Time  `json:"from"`
	To          time.Time  `json:"to"`
	Model       string     `json:"model"`
	Conversion  Conversion `json:"conversion"`
	Conversions int64      `json:"conversions"`
	Value       Money      `json:"value"`
	Cost        Money      `json:"cost"` // every catalogue tool's cost over the range
	// UnallocatedCost is the cost of the tools that earned nothing: no
	// channel carries it.
	UnallocatedCost Money           `json:"unallocatedCost"`
	Tools           []ToolReturn    `json:"tools"`
	Channels        []ChannelReturn `json:"channels"`
	Review          []Review        `json:"review"`
}

// monthMicros is the average month (365.25/12 days).
const monthMicros = 365.25 / 12 * 24 * 3600 * 1e6

// CostOver is a monthly cost over a range, in hundredths.
func CostOver(monthly float64, from, to time.Time) Money {
	return Money(math.Round(monthly * 100 * float64(to.Sub(from).Microseconds()) / monthMicros))
}

// Report computes the report of q (validated) over src, with the
// catalogue's tools.
func (c *Config) Report(ctx context.Context, src Source, q *ReportQuery, tools []Tool) (*Report, error) {
	aq := q.query()
	aq.By = byToolChannel
	res, err := c.Attribute(ctx, src, &aq)
	if err != nil {
		return nil, err
	}
	rep := &Report{From: res.From, To: res.To, Model: q.Model, Conversion: q.Conversion, Conversions: res.Conversions, Value: res.Value,
		Tools: []ToolReturn{}, Channels: []ChannelReturn{}, Review: []Review{}}
	type cell struct {
		tool, channel string
		conv          Share
		value         Money
	}
	var cells []cell
	for _, cr := range res.Models[0].Credits {
		tool, channel, ok := strings.Cut(cr.Key, keySep)
		if !ok { // no touch
			channel = NoTouch
		}
		cells = append(cells, cell{tool, channel, cr.Conversions, cr.Value})
	}
	byID := map[string]*ToolReturn{}
	byName := map[string]*ToolReturn{}
	costs := map[string]Money{}
	for _, t := range tools {
		cost := CostOver(t.MonthlyCost, res.From, res.To)
		rep.Cost += cost
		tr := &ToolReturn{Tool: t.ID, Name: t.Name, Kind: t.Kind, Cost: cost}
		byID[t.ID] = tr
		if _, dup := byName[t.Name]; !dup && t.Name != "" {
			byName[t.Name] = tr
		}
		costs[t.ID] = cost
	}
	extra := map[string]*ToolReturn{}
	lookup := func(key string) *ToolReturn {
		if tr := byID[key]; tr != nil {
			return tr
		}
		if tr := byName[key]; tr != nil {
			return tr
		}
		tr := extra[key]
		if tr == nil {
			tr = &ToolReturn{Tool: key}
			extra[key] = tr
		}
		return tr
	}
	// Per tool, and each tool's conversions per channel (to share its cost).
	perTool := map[*ToolReturn]map[string]Share{}
	channels := map[string]*ChannelReturn{}
	for _, x := range cells {
		tr := lookup(x.tool)
		tr.Conversions += x.conv
		tr.Value += x.value
		if perTool[tr] == nil {
			perTool[tr] = map[string]Share{}
		}
		perTool[tr][x.channel] += x.conv
		ch := channels[x.channel]
		if ch == nil {
			ch = &ChannelReturn{Channel: x.channel}
			channels[x.channel] = ch
		}
		ch.Conversions += x.conv
		ch.Value += x.value
	}
	for tr, chs := range perTool {
		if tr.Cost == 0 {
			continue
		}
		names := slices.Sorted(maps.Keys(chs))
		ws := make([]uint64, len(names))
		for i, n := range names {
			ws[i] = uint64(chs[n])
		}
		for i, part := range Split(uint64(tr.Cost), ws) {
			channels[names[i]].Cost += Money(part)
		}
	}
	rep.UnallocatedCost = rep.Cost
	for _, ch := range channels {
		rep.UnallocatedCost -= ch.Cost
	}
	for _, t := range tools {
		tr := byID[t.ID]
		rep.Tools = append(rep.Tools, *tr)
		if t.Kind == "destination" && tr.Conversions == 0 {
			rep.Review = append(rep.Review, Review{Tool: t.ID, Name: t.Name, Cost: tr.Cost, DataCategories: append([]string{}, t.DataCategories...)})
		}
	}
	for _, tr := range extra {
		rep.Tools = append(rep.Tools, *tr)
	}
	for i := range rep.Tools {
		t := &rep.Tools[i]
		t.CostPerConversion, t.ReturnOnSpend = ratios(t.Cost, t.Conversions, t.Value)
	}
	slices.SortFunc(rep.Tools, func(a, b ToolReturn) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(b.Conversions, a.Conversions), cmp.Compare(b.Cost, a.Cost), cmp.Compare(a.Tool, b.Tool))
	})
	for _, ch := range channels {
		ch.CostPerConversion, ch.ReturnOnSpend = ratios(ch.Cost, ch.Conversions, ch.Value)
		rep.Channels = append(rep.Channels, *ch)
	}
	slices.SortFunc(rep.Channels, func(a, b ChannelReturn) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(b.Conversions, a.Conversions), cmp.Compare(a.Channel, b.Channel))
	})
	slices.SortFunc(rep.Review, func(a, b Review) int { return cmp.Or(cmp.Compare(b.Cost, a.Cost), cmp.Compare(a.Tool, b.Tool)) })
	return rep, nil
}

// ratios are cost per conversion (hundredths, rounded) and return on
// spend (value over cost, 4 places).
func ratios(cost Money, conv Share, value Money) (*Money, *float64) {
	var cpc *Money
	var ros *float64
	if conv > 0 {
		m := Money(math.Round(float64(cost) * 1e6 / float64(conv)))
		cpc = &m
	}
	if cost > 0 {
		r := math.Round(float64(value)/float64(cost)*1e4) / 1e4
		ros = &r
	}
	return cpc, ros
}
