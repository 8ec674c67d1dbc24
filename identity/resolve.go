package identity

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// link is one distinct set of identifiers seen together, with the earliest
// event (by event time, then source and messageId) that carried it. The
// links of a component are all resolution needs: a later event with the
// same set changes nothing (profiles only grow during a replay, so what
// the earliest event merged or dropped, a later one would too).
type link struct {
	ids    []string // priority order
	at     time.Time
	source string
	msg    string
	typ    string // the event's type, for explanations
}

func (l link) less(o link) int {
	if c := l.at.Compare(o.at); c != 0 {
		return c
	}
	if c := cmp.Compare(l.source, o.source); c != 0 {
		return c
	}
	if c := cmp.Compare(l.msg, o.msg); c != 0 {
		return c
	}
	return slices.Compare(l.ids, o.ids)
}

// Decision kinds: manual decisions taken by an unmerge.
const (
	// KindApart keeps two identifiers (and so the profiles that hold
	// them) apart: the resolution refuses any merge that would join them.
	KindApart = "apart"
	// KindDetach keeps one identifier in a profile of its own.
	KindDetach = "detach"
)

// Decision is a manual identity decision, recorded by an unmerge and
// respected by every resolution after it.
type Decision struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // KindApart or KindDetach
	A         string    `json:"a"`    // identifier, "type:value"
	B         string    `json:"b,omitempty"`
	By        string    `json:"by,omitempty"` // user id
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// decisionID makes a decision's id from its content, so that taking the
// same decision twice records it once.
func decisionID(kind, a, b string) string {
	if kind == KindApart && b < a {
		a, b = b, a
	}
	return "dcs_" + shortHash(kind, a, b)
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:10])
}

// Step kinds in an explanation.
const (
	StepCreated  = "created"
	StepJoined   = "joined"
	StepMerged   = "merged"
	StepDropped  = "dropped"
	StepDetached = "detached"
)

// Step is one link in the chain that explains a profile.
type Step struct {
	Kind       string    `json:"kind"`
	At         time.Time `json:"at"` // the event's time
	SourceID   string    `json:"sourceId"`
	MessageID  string    `json:"messageId"`
	EventType  string    `json:"eventType"`
	Identifier string    `json:"identifier"`         // the identifier that joined, was dropped or detached; for a merge the other profile's first identifier
	Via        []string  `json:"via,omitempty"`      // identifiers of the event already in the profile(s), through which it linked
	Profile    string    `json:"profile,omitempty"`  // merged: the profile absorbed; dropped: the profile the merge would have joined
	MergeID    string    `json:"mergeId,omitempty"`  // merged: what POST …/unmerge takes
	Rule       string    `json:"rule"`               // the rule that decided
	Decision   string    `json:"decision,omitempty"` // the manual decision involved, if any
	Text       string    `json:"text"`               // the step as a sentence

	seq        int
	keepAnchor string // merged: the first identifier of each side
	joinAnchor string
}

// resolved is one profile of a resolved component.
type resolved struct {
	id     string
	anchor string   // the identifier that started it
	idents []string // in the order they joined
	counts []int    // identifiers per type, by the type's rank (unknown types not counted)
	steps  []Step
	order  int
}

// resolution is a component's partition into profiles.
type resolution struct {
	profiles []*resolved // alive, in creation order
	of       map[string]*resolved
	// whole: the one profile holds every identifier (its idents,
	// sorted) and of is nil, as compiled.whole makes it.
	whole bool
}

// profileOf returns the profile holding id, nil if none does.
func (r *resolution) profileOf(id string) *resolved {
	if r.whole {
		p := r.profiles[0]
		if _, ok := slices.BinarySearch(p.idents, id); ok {
			return p
		}
		return nil
	}
	return r.of[id]
}

// resolver replays a component's links.
type resolver struct {
	c      *compiled
	pid    func(anchor string) string
	apart  []Decision
	detach map[string]Decision
	res    resolution
	order  int
	seq    int
	// explain: record the steps that explain each profile. Without it,
	// resolution only partitions (the pipeline's case).
	explain bool
}

// resolve partitions the identifiers of links into profiles: it replays
// the links in (event time, source, messageId) order under the rules and
// the decisions, and records the steps that explain each profile. The
// result depends only on the set of links, the rules and the decisions,
// never on the order events arrived in.
func (c *compiled) resolve(links []link, decisions []Decision, pid func(string) string) resolution {
	return c.replay(links, decisions, pid, true)
}

// partition is resolve without the explanations: the same profiles,
// cheaper.
func (c *compiled) partition(links []link, decisions []Decision, pid func(string) string) resolution {
	return c.replay(links, decisions, pid, false)
}

// whole is partition's shortcut for a component without manual decisions
// whose identifiers, all together, break no type's limit (most: a
// person's devices, user id and address): no merge can then break a rule,
// so the replay joins every identifier of the links into one profile,
// started by the first identifier (in priority order) of the earliest
// link. ok is false when the limits may bite: partition must replay.
func (c *compiled) whole(links []link, pid func(string) string) (res resolution, ok bool) {
	if len(links) == 0 {
		return resolution{}, false
	}
	first := links[0]
	n := 0
	for _, l := range links {
		if l.less(first) < 0 {
			first = l
		}
		n += len(l.ids)
	}
	ids := make([]string, 0, n)
	for _, l := range links {
		ids = append(ids, l.ids...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	p := &resolved{anchor: first.ids[0], counts: make([]int, len(c.rules.Types)), order: 1}
	for _, id := range ids {
		if k, ok := c.rankOf(id); ok {
			p.counts[k]++
		}
	}
	for k, t := range c.rules.Types {
		if t.Limit > 0 && p.counts[k] > t.Limit {
			return resolution{}, false
		}
	}
	p.id = pid(p.anchor)
	p.idents = ids
	return resolution{profiles: []*resolved{p}, whole: true}, true
}

func (c *compiled) replay(links []link, decisions []Decision, pid func(string) string, explain bool) resolution {
	r := &resolver{c: c, pid: pid, res: resolution{of: make(map[string]*resolved, 2*len(links))}, explain: explain}
	for _, d := range decisions {
		switch d.Kind {
		case KindApart:
			r.apart = append(r.apart, d)
		case KindDetach:
			if r.detach == nil {
				r.detach = map[string]Decision{}
			}
			r.detach[d.A] = d
		}
	}
	slices.SortFunc(r.apart, func(a, b Decision) int { return cmp.Compare(a.ID, b.ID) })
	if !slices.IsSortedFunc(links, link.less) {
		links = slices.Clone(links)
		slices.SortFunc(links, link.less)
	}
	for _, l := range links {
		ids := l.ids
		if r.detach != nil {
			ids = nil
			for _, id := range l.ids {
				if d, ok := r.detach[id]; ok {
					r.applyDetached(l, id, d)
					continue
				}
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			r.apply(l, ids)
		}
	}
	alive := r.res.profiles[:0]
	for _, p := range r.res.profiles {
		if r.res.of[p.anchor] == p {
			slices.SortStableFunc(p.steps, func(a, b Step) int { return cmp.Compare(a.seq, b.seq) })
			alive = append(alive, p)
		}
	}
	r.res.profiles = alive
	return r.res
}

func (r *resolver) step(p *resolved, s Step, l link) {
	if !r.explain {
		return
	}
	r.seq++
	s.seq = r.seq
	s.At, s.SourceID, s.MessageID, s.EventType = l.at, l.source, l.msg, l.typ
	p.steps = append(p.steps, s)
}

func (r *resolver) create(l link, anchor string) *resolved {
	r.order++
	p := &resolved{id: r.pid(anchor), anchor: anchor, counts: make([]int, len(r.c.rules.Types)), order: r.order}
	r.res.profiles = append(r.res.profiles, p)
	r.add(p, anchor)
	return p
}

func (r *resolver) add(p *resolved, id string) {
	if k, ok := r.c.rankOf(id); ok {
		p.counts[k]++
	}
	p.idents = append(p.idents, id)
	r.res.of[id] = p
}

func (r *resolver) applyDetached(l link, id string, d Decision) {
	if r.res.of[id] != nil {
		return
	}
	p := r.create(l, id)
	if !r.explain {
		return
	}
	r.step(p, Step{Kind: StepDetached, Identifier: id, Rule: "unmerge: kept apart from every other identifier", Decision: d.ID,
		Text: fmt.Sprintf("%s is kept in a profile of its own by unmerge decision %s; first seen in %s event %s at %s", id, d.ID, l.typ, l.msg, stamp(l.at))}, l)
}

// apply adds one link's identifiers (priority order) to the partition.
func (r *resolver) apply(l link, ids []string) {
	kept := ids
	var dropped []string
	var why []string
	var whyDecision []string
	var matchedAtDrop [][]*resolved
	for {
		matched, newIDs := r.match(kept)
		reason, dec := r.violation(matched, newIDs)
		if reason == "" {
			break
		}
		n := len(kept) - 1
		dropped = append(dropped, kept[n])
		why = append(why, reason)
		whyDecision = append(whyDecision, dec)
		matchedAtDrop = append(matchedAtDrop, matched)
		kept = kept[:n:n]
		if len(kept) == 0 {
			break
		}
	}
	// A dropped identifier no profile holds yet joins after all if it
	// breaks nothing: only identifiers that caused the conflict stay out.
	var readded []string
	for i := len(dropped) - 1; i >= 0; i-- {
		d := dropped[i]
		if r.res.of[d] != nil || len(kept) == 0 {
			continue
		}
		trial := append(slices.Clone(kept), d)
		matched, newIDs := r.match(trial)
		if reason, _ := r.violation(matched, newIDs); reason == "" {
			kept = r.c.sortIdents(trial)
			readded = append(readded, d)
		}
	}
	var home *resolved
	if len(kept) > 0 {
		r.join(l, kept)
		home = r.res.of[kept[0]]
	}
	if !r.explain {
		return
	}
	for i, d := range dropped {
		if slices.Contains(readded, d) {
			continue
		}
		typ, _ := splitIdent(d)
		// Record the decision in every profile the merge would have
		// touched, so each side's explanation shows it.
		targets := matchedAtDrop[i]
		for _, p := range []*resolved{r.res.of[d], home} {
			if p != nil && !slices.Contains(targets, p) {
				targets = append(targets, p)
			}
		}
		for _, p := range uniqueAlive(r, targets) {
			others := []string{}
			for _, q := range uniqueAlive(r, targets) {
				if q != p {
					others = append(others, q.id)
				}
			}
			other := "another profile"
			if len(others) > 0 {
				other = "profile " + strings.Join(others, ", ")
			}
			r.step(p, Step{Kind: StepDropped, Identifier: d, Via: kept, Rule: why[i], Decision: whyDecision[i], Profile: strings.Join(others, ","),
				Text: fmt.Sprintf("%s was not merged: %s event %s at %s would have joined this profile and %s, but %s; %s has the lowest priority of the event's identifiers, so it was dropped from the merge",
					d, l.typ, l.msg, stamp(l.at), other, why[i], typ)}, l)
		}
	}
}

func uniqueAlive(r *resolver, ps []*resolved) []*resolved {
	var out []*resolved
	for _, p := range ps {
		if q := r.res.of[p.anchor]; q != nil && !slices.Contains(out, q) {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b *resolved) int { return a.order - b.order })
	return out
}

// match returns the profiles holding some of ids (oldest first) and the
// identifiers no profile holds.
func (r *resolver) match(ids []string) (matched []*resolved, newIDs []string) {
	for _, id := range ids {
		p := r.res.of[id]
		if p == nil {
			newIDs = append(newIDs, id)
		} else if !slices.Contains(matched, p) {
			matched = append(matched, p)
		}
	}
	slices.SortFunc(matched, func(a, b *resolved) int { return a.order - b.order })
	return matched, newIDs
}

// violation says why putting matched and newIDs into one profile breaks
// the rules, "" if it does not; dec is the manual decision involved.
func (r *resolver) violation(matched []*resolved, newIDs []string) (reason, dec string) {
	var buf [8]int
	counts := buf[:0]
	if n := len(r.c.rules.Types); n <= len(buf) {
		counts = buf[:n]
	} else {
		counts = make([]int, n)
	}
	for _, p := range matched {
		for k, n := range p.counts {
			counts[k] += n
		}
	}
	for _, id := range newIDs {
		if k, ok := r.c.rankOf(id); ok {
			counts[k]++
		}
	}
	for k, t := range r.c.rules.Types {
		if t.Limit > 0 && counts[k] > t.Limit {
			return fmt.Sprintf("a profile may have at most %d %s and the merge would give it %d", t.Limit, t.Name, counts[k]), ""
		}
	}
	in := func(id string) bool {
		if p := r.res.of[id]; p != nil {
			return slices.Contains(matched, p)
		}
		return slices.Contains(newIDs, id)
	}
	for _, d := range r.apart {
		if in(d.A) && in(d.B) {
			return fmt.Sprintf("unmerge decision %s keeps %s and %s apart", d.ID, d.A, d.B), d.ID
		}
	}
	return "", ""
}

// join puts ids (which break no rule together) into one profile.
func (r *resolver) join(l link, ids []string) {
	matched, newIDs := r.match(ids)
	var p *resolved
	if len(matched) == 0 {
		p = r.create(l, newIDs[0])
		if r.explain {
			r.step(p, Step{Kind: StepCreated, Identifier: newIDs[0], Rule: "first seen",
				Text: fmt.Sprintf("profile started by %s event %s at %s with %s", l.typ, l.msg, stamp(l.at), newIDs[0])}, l)
		}
		newIDs = newIDs[1:]
	} else {
		p = matched[0]
		for _, q := range matched[1:] {
			r.merge(l, ids, p, q)
		}
	}
	for _, id := range newIDs {
		if !r.explain {
			r.add(p, id)
			continue
		}
		via := r.inProfile(ids, p, id)
		r.add(p, id)
		r.step(p, Step{Kind: StepJoined, Identifier: id, Via: via, Rule: "seen together in one event",
			Text: fmt.Sprintf("%s joined: %s event %s at %s carried it together with %s", id, l.typ, l.msg, stamp(l.at), strings.Join(via, ", "))}, l)
	}
}

// inProfile returns the identifiers of ids held by p, other than except.
func (r *resolver) inProfile(ids []string, p *resolved, except string) []string {
	var out []string
	for _, id := range ids {
		if id != except && r.res.of[id] == p {
			out = append(out, id)
		}
	}
	return out
}

// merge moves q into p.
func (r *resolver) merge(l link, ids []string, p, q *resolved) {
	if !r.explain {
		for _, id := range q.idents {
			r.add(p, id)
		}
		return
	}
	viaP := r.inProfile(ids, p, "")
	viaQ := r.inProfile(ids, q, "")
	for _, id := range q.idents {
		r.add(p, id)
	}
	p.steps = append(p.steps, q.steps...)
	mid := "mrg_" + shortHash(l.source, l.msg, p.anchor, q.anchor)
	r.step(p, Step{Kind: StepMerged, Identifier: q.anchor, Via: append(slices.Clone(viaP), viaQ...), Profile: q.id, MergeID: mid,
		Rule: "shared identifier", keepAnchor: p.anchor, joinAnchor: q.anchor,
		Text: fmt.Sprintf("merged with profile %s (started with %s): %s event %s at %s carried %s, already in this profile, and %s, already in that one",
			q.id, q.anchor, l.typ, l.msg, stamp(l.at), strings.Join(viaP, ", "), strings.Join(viaQ, ", "))}, l)
	// q's anchor now maps to p, so q is no longer alive.
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
