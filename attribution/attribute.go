package attribution

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// conversionUnits is one conversion in millionths.
const conversionUnits = 1_000_000

// keyOf is a touch's key in the dimension by.
func keyOf(t *Touch, by string) string {
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

// touchAt is a touch (its index in the scan's touches) at a time.
type touchAt struct {
	t     int64
	touch int32
}

// scan is what one query learns of a source's Marks: each Mark
// classified once, and the distinct touches and keys numbered, so that
// the models work on small integers.
type scan struct {
	c         *Config
	by        string
	markTouch []int32 // per Mark index: its touch's index, -1 for no touch
	touches   []Touch
	touchKey  []int32 // per touch: its key's index
	touchIdx  map[Touch]int32
	keys      []string
	keyIdx    map[string]int32
}

func newScan(c *Config, by string) *scan {
	return &scan{c: c, by: by, touchIdx: map[Touch]int32{}, keyIdx: map[string]int32{}}
}

// key is the index of the key k.
func (s *scan) key(k string) int32 {
	if i, ok := s.keyIdx[k]; ok {
		return i
	}
	i := int32(len(s.keys))
	s.keyIdx[k] = i
	s.keys = append(s.keys, k)
	return i
}

// classify classifies the marks not classified yet.
func (s *scan) classify(marks []Mark) {
	for i := len(s.markTouch); i < len(marks); i++ {
		t, ok := s.c.ClassifyMark(&marks[i])
		if !ok {
			s.markTouch = append(s.markTouch, -1)
			continue
		}
		id, hit := s.touchIdx[t]
		if !hit {
			id = int32(len(s.touches))
			s.touchIdx[t] = id
			s.touches = append(s.touches, t)
			s.touchKey = append(s.touchKey, s.key(keyOf(&t, s.by)))
		}
		s.markTouch = append(s.markTouch, id)
	}
}

// compare orders touches by time, then by channel, campaign, source and
// tool.
func (s *scan) compare(a, b touchAt) int {
	if c := cmp.Compare(a.t, b.t); c != 0 || a.touch == b.touch {
		return c
	}
	x, y := &s.touches[a.touch], &s.touches[b.touch]
	return cmp.Or(cmp.Compare(x.Channel, y.Channel), cmp.Compare(x.Campaign, y.Campaign),
		cmp.Compare(x.Source, y.Source), cmp.Compare(x.Tool, y.Tool))
}

// sums are one model's totals per key index.
type sums []sum

type sum struct {
	conv, value int64 // conversions (millionths), value (hundredths)
	set         bool
}

func (s *sums) add(key int32, conv, value int64) {
	if int(key) >= len(*s) {
		*s = append(*s, make([]sum, int(key)+1-len(*s))...)
	}
	v := &(*s)[key]
	v.conv += conv
	v.value += value
	v.set = true
}

// Attribute answers q (validated) from the journeys of src.
func (c *Config) Attribute(ctx context.Context, src Source, q *Query) (*Result, error) {
	lookback := q.Lookback.Micros
	from, to := q.FromMicros(), q.ToMicros()
	markov := slices.Contains(q.Models, Markov)
	spec := ScanSpec{From: from - lookback, To: to, ConvFrom: from, Conversion: q.Conversion.Event, Value: q.Conversion.Value, All: markov}
	res := &Result{By: q.By, From: q.From.UTC(), To: q.To.UTC()}
	sc := newScan(c, q.By)
	none := sc.key(NoTouch)
	per := make([]sums, len(q.Models))
	var (
		ch *chain
		// The Markov model's conversions, credited once the chain is
		// complete: the distinct keys of each (in order of first touch)
		// end at waitEnd in waitKeys.
		waitKeys  []int32
		waitEnd   []int
		waitValue []int64
	)
	if markov {
		ch = &chain{}
		res.Journeys = &JourneyCounts{}
	}
	visit := c.Visit.Microseconds()
	var (
		sp      splitter
		touches []touchAt
		ts      []int64
		keys    []int32
		weights []uint64
	)
	err := src.Journeys(ctx, spec, func(j *Journey) error {
		if len(sc.markTouch) < len(j.Marks) {
			sc.classify(j.Marks)
		}
		touches = touches[:0]
		for i := range j.Events {
			e := &j.Events[i]
			if e.Conversion {
				continue
			}
			if id := sc.markTouch[e.Mark]; id >= 0 {
				touches = append(touches, touchAt{t: e.T, touch: id})
			}
		}
		slices.SortFunc(touches, sc.compare)
		// A touch repeating the previous one within a visit is the same
		// visit, not a new touch.
		kept := touches[:0]
		var last touchAt
		for i, t := range touches {
			if i > 0 && t.touch == last.touch && t.t-last.t <= visit {
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
			value := e.Value
			res.Conversions++
			res.Value += Money(value)
			// Touches in [T-lookback, T].
			lo := search(touches, e.T-lookback)
			hi := search(touches, e.T+1)
			win := touches[lo:hi]
			ts, keys = ts[:0], keys[:0]
			for _, t := range win {
				ts = append(ts, t.t)
				keys = append(keys, sc.touchKey[t.touch])
			}
			if len(win) == 0 {
				res.NoTouch++
				ts, keys = append(ts, e.T), append(keys, none)
			}
			for m, model := range q.Models {
				if model == Markov {
					continue
				}
				weights = ruleWeights(weights, model, ts, e.T, q.HalfLife.Micros)
				sp.credit(&per[m], keys, weights, value)
			}
			if markov {
				ch.add(keys, true)
				res.Journeys.Converting++
				begin := len(waitKeys)
				for _, k := range keys {
					if !slices.Contains(waitKeys[begin:], k) {
						waitKeys = append(waitKeys, k)
					}
				}
				waitEnd = append(waitEnd, len(waitKeys))
				waitValue = append(waitValue, value)
			}
		}
		if markov {
			keys = keys[:0]
			for _, t := range touches {
				if t.t >= from && t.t > lastConv {
					keys = append(keys, sc.touchKey[t.touch])
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
		re, ok := ch.removalEffects(sc.keys, sc.key(OtherKey))
		res.RemovalEffects = map[string]float64{}
		for s, k := range ch.keys {
			if ok[s] {
				res.RemovalEffects[sc.keys[k]] = re[s]
			}
		}
		m := slices.Index(q.Models, Markov)
		var ws []float64
		start := 0
		for i, end := range waitEnd {
			pk := waitKeys[start:end]
			start = end
			ws = ws[:0]
			for x, k := range pk {
				s := ch.state[k]
				pk[x] = ch.keys[s]
				ws = append(ws, re[s])
			}
			weights = scaled(weights, ws)
			sp.credit(&per[m], pk, weights, waitValue[i])
		}
	}
	for m, model := range q.Models {
		mr := ModelResult{Model: model, Credits: []Credit{}}
		for k, v := range per[m] {
			if v.set {
				mr.Credits = append(mr.Credits, Credit{Key: sc.keys[k], Conversions: Share(v.conv), Value: Money(v.value)})
			}
		}
		slices.SortFunc(mr.Credits, func(a, b Credit) int {
			return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(b.Conversions, a.Conversions), cmp.Compare(a.Key, b.Key))
		})
		res.Models = append(res.Models, mr)
	}
	return res, nil
}

// search is the index of the first touch at or after t.
func search(touches []touchAt, t int64) int {
	lo, hi := 0, len(touches)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if touches[m].t < t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
