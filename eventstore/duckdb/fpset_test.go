package duckdb

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// The filter never forgets a fingerprint it was given and says "maybe"
// exactly for the fingerprints it holds (the filter itself is exact on
// fingerprints; its false positives come only from truncating hashes).
func TestFPSetModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		width := rapid.UintRange(partBits+1, partBits+32).Draw(t, "width")
		f := newFPSet(width)
		model := map[uint64]bool{}
		fp := func(h uint64) uint64 { return h >> (64 - width) }
		// A small universe of hashes that share prefixes often, so that
		// partitions fill up, flush, and hold neighbouring values.
		universe := rapid.SliceOfN(rapid.Uint64(), 1, 50).Draw(t, "universe")
		pick := rapid.Custom(func(t *rapid.T) uint64 {
			base := rapid.SampledFrom(universe).Draw(t, "base")
			return base ^ rapid.Uint64Range(0, 1<<rapid.UintRange(0, 40).Draw(t, "spread")).Draw(t, "delta")
		})
		steps := rapid.IntRange(1, 3000).Draw(t, "steps")
		for range steps {
			h := pick.Draw(t, "h")
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0:
				batch := rapid.SliceOfN(pick, 0, 300).Draw(t, "load")
				for _, b := range batch {
					model[fp(b)] = true
				}
				f.load(batch) // overwrites batch
			case 1, 2, 3, 4:
				f.add(h)
				model[fp(h)] = true
			default:
				if got := f.mayContain(h); got != model[fp(h)] {
					t.Fatalf("mayContain(%x) = %v, want %v", h, got, model[fp(h)])
				}
			}
		}
		if f.n != int64(len(model)) {
			t.Fatalf("n = %d, want %d", f.n, len(model))
		}
		// What the set counted into FilterBytes as it grew is what it
		// holds.
		if fixed := int64(len(f.parts)) * unsafeSizeofPart; f.held+fixed != f.bytes() {
			t.Fatalf("held %d + fixed %d, want bytes() = %d", f.held, fixed, f.bytes())
		}
		f.release()
		for h := range model {
			if !f.mayContain(h << (64 - width)) {
				t.Fatalf("lost fingerprint %x", h)
			}
		}
	})
}

// A segment round-trips large and small gaps, including gaps whose unary
// part spans words.
func TestRiceSegRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vals := rapid.SliceOfNDistinct(rapid.Uint32(), 0, 500, func(v uint32) uint32 { return v }).Draw(t, "vals")
		// Some clustered values make the mean gap small and a few gaps huge.
		if rapid.Bool().Draw(t, "cluster") {
			for i := range vals {
				if i%3 != 0 {
					vals[i] = vals[i] % 1000
				}
			}
			vals = compactSorted(vals)
		} else {
			vals = compactSorted(vals)
		}
		s := buildSeg(vals)
		got := s.appendAll(nil)
		if len(got) != len(vals) {
			t.Fatalf("decoded %d values, want %d", len(got), len(vals))
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Fatalf("value %d = %d, want %d", i, got[i], vals[i])
			}
			if !s.contains(vals[i]) {
				t.Fatalf("contains(%d) = false", vals[i])
			}
			if v := vals[i] + 1; (i+1 == len(vals) || vals[i+1] != v) && v != 0 && s.contains(v) {
				t.Fatalf("contains(%d) = true for an absent value", v)
			}
		}
	})
}

func compactSorted(v []uint32) []uint32 {
	out := append([]uint32(nil), v...)
	sortU32(out)
	j := 0
	for i := range out {
		if i == 0 || out[i] != out[j-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

func sortU32(v []uint32) { slices.Sort(v) }
