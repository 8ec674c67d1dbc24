package attribution

import (
	"cmp"
	"math"
	"slices"
)

// MaxMarkovKeys bounds the states of the Markov chain: beyond it, the
// keys with the fewest touches are one state, OtherKey.
const MaxMarkovKeys = 500

// OtherKey is the Markov state of the keys beyond MaxMarkovKeys.
const OtherKey = "(other)"

// chain counts the transitions of a first-order Markov chain over keys:
// state 0 is the start, 1..n the keys; conv and null absorb.
type chain struct {
	index map[string]int
	keys  []string
	// next[i][j]: transitions from state i to state j (j < 0: -1 conv,
	// -2 null).
	next  []map[int]int64
	touch []int64 // touches per key state, to fold rare keys
}

func newChain() *chain {
	return &chain{index: map[string]int{}, keys: []string{""}, next: []map[int]int64{{}}, touch: []int64{0}}
}

func (c *chain) state(k string) int {
	if i, ok := c.index[k]; ok {
		return i
	}
	i := len(c.keys)
	c.index[k] = i
	c.keys = append(c.keys, k)
	c.next = append(c.next, map[int]int64{})
	c.touch = append(c.touch, 0)
	return i
}

const (
	toConv = -1
	toNull = -2
)

// add records one journey: its keys in order (repeats in a row are one
// state: they change no absorption probability) and how it ended.
func (c *chain) add(keys []string, converted bool) {
	prev := 0
	for i, k := range keys {
		if i > 0 && k == keys[i-1] {
			continue
		}
		s := c.state(k)
		c.touch[s]++
		c.next[prev][s]++
		prev = s
	}
	end := toNull
	if converted {
		end = toConv
	}
	c.next[prev][end]++
}

// removalEffects computes each key's removal effect: the share of the
// chain's conversion probability lost when the key's state is removed
// (its transitions go to null). With x the probability of reaching conv
// from each state and N = (I-Q)^-1, the probability of reaching conv
// from the start without passing state k is x_0 - (N_0k/N_kk)·x_k, so
// one inverse gives every effect: RE_k = (N_0k/N_kk)·x_k / x_0.
func (c *chain) removalEffects() map[string]float64 {
	c.fold()
	n := len(c.keys)
	// A = I - Q, b = the one-step conversion probabilities.
	a := make([][]float64, n)
	b := make([]float64, n)
	for i := range n {
		a[i] = make([]float64, n)
		a[i][i] = 1
		var out int64
		for _, v := range c.next[i] {
			out += v
		}
		if out == 0 {
			continue
		}
		for j, v := range c.next[i] {
			p := float64(v) / float64(out)
			switch {
			case j == toConv:
				b[i] += p
			case j >= 0:
				a[i][j] -= p
			}
		}
	}
	inv, ok := invert(a)
	res := map[string]float64{}
	if !ok {
		return res
	}
	x := make([]float64, n)
	for i := range n {
		for j := range n {
			x[i] += inv[i][j] * b[j]
		}
	}
	if x[0] <= 0 {
		return res
	}
	for k := 1; k < n; k++ {
		if inv[k][k] == 0 {
			continue
		}
		res[c.keys[k]] = inv[0][k] / inv[k][k] * x[k] / x[0]
	}
	return res
}

// fold merges the keys beyond MaxMarkovKeys (fewest touches first) into
// OtherKey.
func (c *chain) fold() {
	if len(c.keys)-1 <= MaxMarkovKeys {
		return
	}
	order := make([]int, 0, len(c.keys)-1)
	for i := 1; i < len(c.keys); i++ {
		order = append(order, i)
	}
	slices.SortFunc(order, func(x, y int) int {
		if d := cmp.Compare(c.touch[y], c.touch[x]); d != 0 {
			return d
		}
		return cmp.Compare(c.keys[x], c.keys[y])
	})
	keep := MaxMarkovKeys - 1
	m := newChain()
	to := make([]int, len(c.keys))
	for r, i := range order {
		k := c.keys[i]
		if r >= keep {
			k = OtherKey
		}
		to[i] = m.state(k)
		m.touch[to[i]] += c.touch[i]
	}
	for i, nx := range c.next {
		for j, v := range nx {
			if j >= 0 {
				j = to[j]
			}
			m.next[to[i]][j] += v
		}
	}
	*c = *m
}

// keyOf is the Markov state's key a conversion's touch key maps to after
// folding.
func (c *chain) keyOf(k string) string {
	if _, ok := c.index[k]; ok {
		return k
	}
	return OtherKey
}

// invert inverts a by Gauss-Jordan elimination with partial pivoting; ok
// false when a is singular.
func invert(a [][]float64) ([][]float64, bool) {
	n := len(a)
	m := make([][]float64, n)
	inv := make([][]float64, n)
	for i := range n {
		m[i] = slices.Clone(a[i])
		inv[i] = make([]float64, n)
		inv[i][i] = 1
	}
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(m[r][col]) > math.Abs(m[p][col]) {
				p = r
			}
		}
		if math.Abs(m[p][col]) < 1e-12 {
			return nil, false
		}
		m[col], m[p] = m[p], m[col]
		inv[col], inv[p] = inv[p], inv[col]
		d := m[col][col]
		for j := range n {
			m[col][j] /= d
			inv[col][j] /= d
		}
		for r := range n {
			if r == col || m[r][col] == 0 {
				continue
			}
			f := m[r][col]
			for j := range n {
				m[r][j] -= f * m[col][j]
				inv[r][j] -= f * inv[col][j]
			}
		}
	}
	return inv, true
}
