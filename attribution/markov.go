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

// chain counts the transitions of a first-order Markov chain over keys
// (their indexes in a scan): state 0 is the start, the others keys; conv
// and null absorb.
type chain struct {
	state []int32 // per key: its state (0: none)
	keys  []int32 // per state: its key (-1 for the start)
	// next[i][j]: transitions from state i to state j (j < 0: toConv,
	// toNull).
	next  []map[int32]int64
	touch []int64 // touches per state, to fold rare keys
}

func (c *chain) init() {
	if len(c.keys) == 0 {
		c.keys, c.next, c.touch = []int32{-1}, []map[int32]int64{{}}, []int64{0}
	}
}

// stateOf is key k's state, added when it has none.
func (c *chain) stateOf(k int32) int32 {
	if int(k) < len(c.state) && c.state[k] != 0 {
		return c.state[k]
	}
	if int(k) >= len(c.state) {
		c.state = append(c.state, make([]int32, int(k)+1-len(c.state))...)
	}
	s := int32(len(c.keys))
	c.state[k] = s
	c.keys = append(c.keys, k)
	c.next = append(c.next, map[int32]int64{})
	c.touch = append(c.touch, 0)
	return s
}

const (
	toConv = -1
	toNull = -2
)

// add records one journey: its keys in order (repeats in a row are one
// state: they change no absorption probability) and how it ended.
func (c *chain) add(keys []int32, converted bool) {
	c.init()
	prev := int32(0)
	for i, k := range keys {
		if i > 0 && k == keys[i-1] {
			continue
		}
		s := c.stateOf(k)
		c.touch[s]++
		c.next[prev][s]++
		prev = s
	}
	end := int32(toNull)
	if converted {
		end = toConv
	}
	c.next[prev][end]++
}

// removalEffects folds the chain (names are the keys' names; other is
// OtherKey's key) and computes each state's removal effect: the share of
// the chain's conversion probability lost when the state is removed (its
// transitions go to null); ok says which states have one. With x the
// probability of reaching conv from each state and N = (I-Q)^-1, the
// probability of reaching conv from the start without passing state k is
// x_0 - (N_0k/N_kk)·x_k, so one inverse gives every effect: RE_k =
// (N_0k/N_kk)·x_k / x_0.
func (c *chain) removalEffects(names []string, other int32) (re []float64, ok []bool) {
	c.init()
	c.fold(names, other)
	n := len(c.keys)
	re, ok = make([]float64, n), make([]bool, n)
	// The matrix's rows are the states in the order of their keys' names
	// (the start first), so that its rounding does not depend on the
	// order the journeys came in.
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order[1:], func(x, y int32) int { return cmp.Compare(names[c.keys[x]], names[c.keys[y]]) })
	pos := make([]int32, n)
	for i, s := range order {
		pos[s] = int32(i)
	}
	// A = I - Q, b = the one-step conversion probabilities.
	a := make([][]float64, n)
	b := make([]float64, n)
	for i := range n {
		a[i] = make([]float64, n)
		a[i][i] = 1
	}
	for s := range n {
		i := pos[s]
		var out int64
		for _, v := range c.next[s] {
			out += v
		}
		if out == 0 {
			continue
		}
		for j, v := range c.next[s] {
			p := float64(v) / float64(out)
			switch {
			case j == toConv:
				b[i] += p
			case j >= 0:
				a[i][pos[j]] -= p
			}
		}
	}
	inv, invertible := invert(a)
	if !invertible {
		return re, ok
	}
	x := make([]float64, n)
	for i := range n {
		for j := range n {
			x[i] += inv[i][j] * b[j]
		}
	}
	if x[0] <= 0 {
		return re, ok
	}
	for s := 1; s < n; s++ {
		k := pos[s]
		if inv[k][k] == 0 {
			continue
		}
		re[s], ok[s] = inv[0][k]/inv[k][k]*x[k]/x[0], true
	}
	return re, ok
}

// fold merges the keys beyond MaxMarkovKeys (fewest touches first, then
// by name) into one state, other's.
func (c *chain) fold(names []string, other int32) {
	if len(c.keys)-1 <= MaxMarkovKeys {
		return
	}
	order := make([]int32, 0, len(c.keys)-1)
	for i := 1; i < len(c.keys); i++ {
		order = append(order, int32(i))
	}
	slices.SortFunc(order, func(x, y int32) int {
		if d := cmp.Compare(c.touch[y], c.touch[x]); d != 0 {
			return d
		}
		return cmp.Compare(names[c.keys[x]], names[c.keys[y]])
	})
	keep := MaxMarkovKeys - 1
	m := &chain{}
	m.init()
	to := make([]int32, len(c.keys))
	for r, i := range order {
		k := c.keys[i]
		if r >= keep {
			k = other
		}
		to[i] = m.stateOf(k)
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
	if len(m.state) < len(c.state) {
		m.state = append(m.state, make([]int32, len(c.state)-len(m.state))...)
	}
	for k, s := range c.state {
		if s != 0 {
			m.state[k] = to[s]
		}
	}
	*c = *m
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
