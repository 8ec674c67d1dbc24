package identity

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"
)

// graph is one connected component of the identity graph as it is stored:
// one row of identity_components. It holds everything resolution needs
// (the component's links) and what it decided (each identifier's
// profile), so that reading or changing a component is one row, however
// many identifiers and links it has.
type graph struct {
	idents  []string       // every identifier of the component, sorted
	profile []int32        // per identifier: index into pids, -1 for none
	pids    []string       // profile ids, in order of first use
	links   []link         // ids are strings of idents
	index   map[string]int // linkKey → position in links, built when needed
}

// newGraph builds the graph of links partitioned as res decided; idents
// are the component's identifiers.
func newGraph(idents []string, links []link, res resolution) *graph {
	g := &graph{idents: slices.Clone(idents), links: slices.Clone(links)}
	slices.Sort(g.idents)
	g.idents = slices.Compact(g.idents)
	slices.SortFunc(g.links, link.less)
	// A profile's index in pids: found by a look along pids while they
	// are few (most components have one profile), through a map after.
	var index map[string]int32
	g.profile = make([]int32, len(g.idents))
	for i, id := range g.idents {
		g.profile[i] = -1
		p := res.profileOf(id)
		if p == nil {
			continue
		}
		k := int32(-1)
		if index != nil {
			if j, ok := index[p.id]; ok {
				k = j
			}
		} else if j := slices.Index(g.pids, p.id); j >= 0 {
			k = int32(j)
		}
		if k < 0 {
			k = int32(len(g.pids))
			g.pids = append(g.pids, p.id)
			if index != nil {
				index[p.id] = k
			} else if len(g.pids) > 8 {
				index = make(map[string]int32, 2*len(g.pids))
				for j, q := range g.pids {
					index[q] = int32(j)
				}
			}
		}
		g.profile[i] = k
	}
	return g
}

// find returns the index of id in g.idents, or -1.
func (g *graph) find(id string) int {
	if i, ok := slices.BinarySearch(g.idents, id); ok {
		return i
	}
	return -1
}

// profileOf returns the profile holding id, "" if none does.
func (g *graph) profileOf(id string) string {
	i := g.find(id)
	if i < 0 || g.profile[i] < 0 {
		return ""
	}
	return g.pids[g.profile[i]]
}

// members returns the identifiers of profile pid, sorted.
func (g *graph) members(pid string) []string {
	var out []string
	for i, id := range g.idents {
		if k := g.profile[i]; k >= 0 && g.pids[k] == pid {
			out = append(out, id)
		}
	}
	return out
}

// linkOf returns the stored link of the identifier set ids (priority
// order), if the component has one.
func (g *graph) linkOf(ids []string) (link, bool) {
	if len(g.links) <= 16 {
		for _, l := range g.links {
			if slices.Equal(l.ids, ids) {
				return l, true
			}
		}
		return link{}, false
	}
	if g.index == nil {
		g.index = make(map[string]int, len(g.links))
		for i, l := range g.links {
			g.index[linkKey(l.ids)] = i
		}
	}
	if i, ok := g.index[linkKey(ids)]; ok {
		return g.links[i], true
	}
	return link{}, false
}

// size is how much rewriting the component costs: the larger of two
// merging components absorbs the other.
func (g *graph) size() int { return len(g.idents) + len(g.links) }

// linkKey identifies a link's set of identifiers within a component.
func linkKey(ids []string) string { return strings.Join(ids, "\x00") }

// graphFormat is the first byte of an encoded graph.
const graphFormat = 1

var errBadGraph = errors.New("identity: stored component is corrupt")

// encode writes g in a compact binary form: identifiers once, links as
// indexes into them.
func (g *graph) encode() []byte {
	n := 16
	for _, id := range g.idents {
		n += len(id) + 2
	}
	for _, p := range g.pids {
		n += len(p) + 1
	}
	n += len(g.links) * 48
	b := make([]byte, 0, n)
	b = append(b, graphFormat)
	b = binary.AppendUvarint(b, uint64(len(g.idents)))
	for _, id := range g.idents {
		b = appendString(b, id)
	}
	b = binary.AppendUvarint(b, uint64(len(g.pids)))
	for _, p := range g.pids {
		b = appendString(b, p)
	}
	for _, k := range g.profile {
		b = binary.AppendUvarint(b, uint64(k+1))
	}
	b = binary.AppendUvarint(b, uint64(len(g.links)))
	for _, l := range g.links {
		b = binary.AppendUvarint(b, uint64(len(l.ids)))
		for _, id := range l.ids {
			b = binary.AppendUvarint(b, uint64(g.find(id)))
		}
		b = binary.AppendVarint(b, l.at.UnixNano())
		b = appendString(b, l.source)
		b = appendString(b, l.msg)
		b = appendString(b, l.typ)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeGraph reads what encode wrote.
func decodeGraph(b []byte) (*graph, error) {
	if len(b) == 0 || b[0] != graphFormat {
		return nil, errBadGraph
	}
	d := decoder{b: b[1:]}
	g := &graph{}
	n := d.count()
	g.idents = make([]string, 0, n)
	for range n {
		g.idents = append(g.idents, d.string())
	}
	np := d.count()
	g.pids = make([]string, 0, np)
	for range np {
		g.pids = append(g.pids, d.string())
	}
	g.profile = make([]int32, n)
	for i := range g.profile {
		k := d.uvarint()
		if k > uint64(np) {
			return nil, errBadGraph
		}
		g.profile[i] = int32(k) - 1
	}
	nl := d.count()
	g.links = make([]link, 0, nl)
	for range nl {
		var l link
		ni := d.count()
		l.ids = make([]string, 0, ni)
		for range ni {
			k := d.uvarint()
			if k >= uint64(n) {
				return nil, errBadGraph
			}
			l.ids = append(l.ids, g.idents[k])
		}
		l.at = time.Unix(0, d.varint()).UTC()
		l.source, l.msg, l.typ = d.string(), d.string(), d.string()
		g.links = append(g.links, l)
	}
	if d.bad || len(d.b) != 0 || !slices.IsSorted(g.idents) {
		return nil, errBadGraph
	}
	return g, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, bounded by what is left to read (each element
// takes at least one byte), so corrupt input cannot ask for a huge
// allocation.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.count()
	if d.bad {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
