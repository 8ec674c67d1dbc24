package attribution

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// conversionUnits is one conversion in millionths.
const conversionUnits = 1_000_000

// touchAt is a classified touch at a time.
type touchAt struct {
	t int64
	Touch
}

func (t *touchAt) key(by string) string {
	switch by {
	case ByCampaign:
		return t.Campaign
	case BySource:
		return t.Source
	case ByTool:
		return t.Tool
	case byToolChannel:
		return t.Tool + keySep + t.Channel
	}
	return t.Channel
}

func compareTouch(a, b touchAt) int {
	return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Campaign, b.Campaign),
		cmp.Compare(a.Source, b.Source), cmp.Compare(a.Tool, b.Tool))
}

// sums are one model's totals per key.
type sums map[string]*[2]int64 // conversions (millionths), value (hundredths)

func (s sums) add(key string, conv, value int64) {
	v := s[key]
	if v == nil {
		v = &[2]int64{}
		s[key] = v
	}
	v[0] += conv
	v[1] += value
}

// pending is a conversion kept for the Markov model, credited once the
// chain is complete.
type pending struct {
	keys  []string // distinct keys of its touches, in order of first touch
	value int64
}

// Attribute answers q (validated) from the journeys of src.
func (c *Config) Attribute(ctx context.Context, src Source, q *Query) (*Result, error) {
	lookback := q.Lookback.Micros
	from, to := q.FromMicros(), q.ToMicros()
	markov := slices.Contains(q.Models, Markov)
	spec := ScanSpec{From: from - lookback, To: to, ConvFrom: from, Conversion: q.Conversion.Event, Value: q.Conversion.Value, All: markov}
	res := &Result{By: q.By, From: q.From.UTC(), To: q.To.UTC()}
	per := make([]sums, len(q.Models))
	for i := range per {
		per[i] = sums{}
	}
	var (
		ch      *chain
		waiting []pending
	)
	if markov {
		ch = newChain()
		res.Journeys = &JourneyCounts{}
	}
	visit := c.Visit.Microseconds()
	var (
		touches []touchAt
		ts      []int64
		keys    []string
	)
	// Marks repeat (a few campaigns, referrers and sources): each is
	// classified once.
	type classified struct {
		t  Touch
		ok bool
	}
	seen := map[Mark]classified{}
	err := src.Journeys(ctx, spec, func(j *Journey) error {
		touches = touches[:0]
		for i := range j.Events {
			e := &j.Events[i]
			if e.Conversion {
				continue
			}
			k, hit := seen[e.Mark]
			if !hit {
				k.t, k.ok = c.ClassifyMark(&e.Mark)
				if len(seen) < 1<<16 {
					seen[e.Mark] = k
				}
			}
			if k.ok {
				touches = append(touches, touchAt{t: e.T, Touch: k.t})
			}
		}
		slices.SortFunc(touches, compareTouch)
		// A touch repeating the previous one within a visit is the same
		// visit, not a new touch.
		kept := touches[:0]
		var last touchAt
		for i, t := range touches {
			if i > 0 && t.Touch == last.Touch && t.t-last.t <= visit {
				last = t
				continue
			}
			last = t
			kept = append(kept, t)
		}
		touches = kept
		lastConv := int64(-1 << 62)
		for i := range j.Events {
			e := &j.Events[i]
			if !e.Conversion {
				continue
			}
			lastConv = max(lastConv, e.T)
			if e.T < from || e.T >= to {
				continue
			}
			value := minorUnits(e.Value)
			res.Conversions++
			res.Value += Money(value)
			// Touches in [T-lookback, T].
			lo, _ := slices.BinarySearchFunc(touches, e.T-lookback, func(t touchAt, x int64) int { return cmp.Compare(t.t, x) })
			hi, _ := slices.BinarySearchFunc(touches, e.T+1, func(t touchAt, x int64) int { return cmp.Compare(t.t, x) })
			win := touches[lo:hi]
			ts, keys = ts[:0], keys[:0]
			for _, t := range win {
				ts = append(ts, t.t)
				keys = append(keys, t.key(q.By))
			}
			if len(win) == 0 {
				res.NoTouch++
				ts, keys = append(ts, e.T), append(keys, NoTouch)
			}
			for m, model := range q.Models {
				if model == Markov {
					continue
				}
				credit(per[m], keys, ruleWeights(model, ts, e.T, q.HalfLife.Micros), value)
			}
			if markov {
				ch.add(keys, true)
				res.Journeys.Converting++
				waiting = append(waiting, pending{keys: distinct(keys), value: value})
			}
		}
		if markov {
			keys = keys[:0]
			for _, t := range touches {
				if t.t >= from && t.t > lastConv {
					keys = append(keys, t.key(q.By))
				}
			}
			if len(keys) > 0 {
				ch.add(keys, false)
				res.Journeys.NonConverting++
			}
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("attribution: %w", err)
	}
	if markov {
		re := ch.removalEffects()
		res.RemovalEffects = re
		m := slices.Index(q.Models, Markov)
		for _, p := range waiting {
			ws := make([]float64, len(p.keys))
			for i, k := range p.keys {
				p.keys[i] = ch.keyOf(k)
				ws[i] = re[p.keys[i]]
			}
			credit(per[m], p.keys, scaled(ws), p.value)
		}
	}
	for m, model := range q.Models {
		mr := ModelResult{Model: model, Credits: []Credit{}}
		for k, v := range per[m] {
			mr.Credits = append(mr.Credits, Credit{Key: k, Conversions: Share(v[0]), Value: Money(v[1])})
		}
		slices.SortFunc(mr.Credits, func(a, b Credit) int {
			return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(b.Conversions, a.Conversions), cmp.Compare(a.Key, b.Key))
		})
		res.Models = append(res.Models, mr)
	}
	return res, nil
}

// credit splits one conversion (and its value) among keys by weights.
func credit(s sums, keys []string, weights []uint64, value int64) {
	conv := Split(conversionUnits, weights)
	neg := value < 0
	abs := value
	if neg {
		abs = -value
	}
	vals := Split(uint64(abs), weights)
	for i, k := range keys {
		v := int64(vals[i])
		if neg {
			v = -v
		}
		if conv[i] == 0 && v == 0 {
			continue
		}
		s.add(k, int64(conv[i]), v)
	}
}

// distinct is keys without repeats, in order of first appearance.
func distinct(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}
