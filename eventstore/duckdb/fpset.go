package duckdb

import (
	"math/bits"
	"slices"
	"sync/atomic"
)

// fpSet is the in-memory dedup filter: a compact set of fingerprint
// prefixes of stored keys. It answers "certainly not stored" or "maybe
// stored"; Append looks the maybes up in the exact key index (keyIndex).
//
// A key's fingerprint is the top width bits of its 64-bit key_hash. The
// top partBits of those pick one of 65,536 partitions; the remaining bits
// (at most 32) are kept per partition in two parts:
//
//   - seg, every remainder of the partition but the recent ones, sorted and
//     Golomb-Rice coded: each gap to the previous remainder as a unary
//     quotient and k low bits, with k chosen from the mean gap, so an entry
//     costs about width-log2(n)+2 bits; every 64th entry is also kept whole,
//     with its bit offset, so a lookup decodes at most 63 gaps;
//   - buf, the recent remainders, sorted and uncompressed, merged into seg
//     when it reaches 1/16 of seg (between 32 and 1024 entries), so merges
//     stay small and each entry is re-encoded a bounded number of times on
//     average; it grows as it fills (from 16 entries), so that the
//     buffers of the 65,536 partitions take about 15 MiB at 100 million
//     stored rather than the 24 MiB of buffers allocated at their limit.
//
// With width 32 and 100 million keys, a partition holds about 1,500
// remainders of 16 bits: about 7.4 bits per entry in seg, 1 bit in its
// index, plus the buffers and 112 bytes per partition; a lookup of a new
// key says "maybe" with probability n/2^32 (2.3% at 100 million), and the
// maybes are looked up in the exact key index (keyindex.go). See `tandem
// bench dedup` for measured figures.
//
// An fpSet is not safe for concurrent use (the Store guards it with wmu).
type fpSet struct {
	width uint // fingerprint bits: partBits < width <= partBits+32
	// mask is applied to every hash first: all ones, except in tests that
	// keep only a few bits to make fingerprint collisions frequent.
	mask  uint64
	parts [1 << partBits]fpPart
	n     int64 // distinct fingerprints held
	// held is the memory of the segments and buffers, in bytes, as
	// counted into heldBytes.
	held int64
}

// heldBytes is the memory the dedup filters of this process hold in
// segments and buffers (their fixed partition state aside); read by
// [FilterBytes].
var heldBytes atomic.Int64

// FilterBytes returns the memory held by the dedup filters of the stores
// open in this process, in bytes: long-lived, pointer-free memory of the
// Go heap that grows with the stored events (about 1.1 bytes per event at
// 100 million), and of their exact key indexes (the newest hashes and
// the fences of the runs on disk: about 4 MiB at 100 million). A node paces its garbage collector with it (see
// [PaceGC]).
func FilterBytes() int64 { return heldBytes.Load() + fixedBytes.Load() + indexHeld.Load() }

// fixedBytes is the partition state of the open filters.
var fixedBytes atomic.Int64

// grow counts delta more bytes held by f.
func (f *fpSet) grow(delta int64) {
	f.held += delta
	heldBytes.Add(delta)
}

// release takes f's memory out of [FilterBytes]; f must not be used after.
func (f *fpSet) release() {
	heldBytes.Add(-f.held)
	fixedBytes.Add(-int64(len(f.parts)) * unsafeSizeofPart)
	f.held = 0
}

const (
	partBits = 16
	// blockLen is the number of entries per indexed block of a segment.
	blockLen = 64
	// defaultWidth is the fingerprint width of a Store's filter.
	defaultWidth = 32
)

type fpPart struct {
	seg riceSeg
	buf []uint32 // sorted, no repeats, none also in seg
}

// riceSeg is a sorted set of uint32 remainders, Golomb-Rice coded.
type riceSeg struct {
	n     int
	k     uint8    // low bits per gap
	words []uint64 // the gaps' bit stream, least significant bit first
	// heads[i] is the value of entry i*blockLen; offs[i] the bit offset in
	// words of entry i*blockLen+1.
	heads []uint32
	offs  []uint32
}

func newFPSet(width uint) *fpSet {
	if width <= partBits || width > partBits+32 {
		panic("duckdb: fingerprint width out of range")
	}
	f := &fpSet{width: width, mask: ^uint64(0)}
	fixedBytes.Add(int64(len(f.parts)) * unsafeSizeofPart)
	return f
}

// split returns the partition and remainder of a key_hash.
func (f *fpSet) split(h uint64) (int, uint32) {
	fp := (h & f.mask) >> (64 - f.width)
	rb := f.width - partBits
	return int(fp >> rb), uint32(fp & (1<<rb - 1))
}

// mayContain reports whether h's fingerprint is in the set: false means a
// key with hash h was never added.
func (f *fpSet) mayContain(h uint64) bool {
	p, r := f.split(h)
	part := &f.parts[p]
	if _, ok := slices.BinarySearch(part.buf, r); ok {
		return true
	}
	return part.seg.contains(r)
}

// add inserts h's fingerprint.
func (f *fpSet) add(h uint64) {
	p, r := f.split(h)
	part := &f.parts[p]
	i, ok := slices.BinarySearch(part.buf, r)
	if ok || part.seg.contains(r) {
		return
	}
	limit := min(max(part.seg.n/16, 32), 1024)
	// The buffer starts small and grows as it fills: a buffer sized for
	// its limit in every partition would hold 24 MiB at 100 million
	// stored, most of it empty.
	c := cap(part.buf)
	if part.buf == nil {
		part.buf = make([]uint32, 0, min(limit, 16))
	}
	part.buf = slices.Insert(part.buf, i, r)
	if d := cap(part.buf) - c; d != 0 {
		f.grow(int64(d) * 4)
	}
	f.n++
	if len(part.buf) >= limit {
		f.grow(part.flush())
	}
}

// flush merges the partition's buffer into its segment and returns the
// change of the bytes it holds.
func (p *fpPart) flush() int64 {
	if len(p.buf) == 0 {
		return 0
	}
	before := p.bytes()
	all := p.seg.appendAll(make([]uint32, 0, p.seg.n+len(p.buf)))
	all = append(all, p.buf...)
	slices.Sort(all)
	p.seg = buildSeg(all)
	p.buf = nil
	return p.bytes() - before
}

// bytes returns the memory of the partition's segment and buffer.
func (p *fpPart) bytes() int64 {
	return int64(cap(p.buf))*4 + int64(cap(p.seg.words))*8 + int64(cap(p.seg.heads))*4 + int64(cap(p.seg.offs))*4
}

// bytes returns the memory the set holds, in bytes.
func (f *fpSet) bytes() int64 {
	var b int64
	for i := range f.parts {
		b += f.parts[i].bytes()
	}
	return b + int64(len(f.parts))*int64(unsafeSizeofPart)
}

// unsafeSizeofPart is the size of an fpPart value: a riceSeg (int, uint8,
// three slice headers) and a slice header.
const unsafeSizeofPart = 8 + 8 + 3*24 + 24

// buildSeg encodes sorted, distinct values.
func buildSeg(vals []uint32) riceSeg {
	n := len(vals)
	if n == 0 {
		return riceSeg{}
	}
	// k: about log2 of the mean gap, which makes the unary parts short.
	span := uint64(vals[n-1]-vals[0]) + 1
	var k uint8
	if mean := span / uint64(n); mean > 1 {
		k = uint8(bits.Len64(mean) - 1)
	}
	s := riceSeg{n: n, k: k,
		heads: make([]uint32, 0, (n+blockLen-1)/blockLen),
		offs:  make([]uint32, 0, (n+blockLen-1)/blockLen)}
	var w bitWriter
	w.words = make([]uint64, 0, (uint64(n)*(uint64(k)+2)+63)/64+1)
	for i, v := range vals {
		if i%blockLen == 0 {
			s.heads = append(s.heads, v)
			s.offs = append(s.offs, uint32(w.n))
			continue
		}
		gap := v - vals[i-1]
		w.unary(gap >> k)
		w.bits(uint64(gap), uint(k))
	}
	s.words = slices.Clip(w.words)
	return s
}

// contains reports whether v is in the segment.
func (s *riceSeg) contains(v uint32) bool {
	if s.n == 0 {
		return false
	}
	// The last block whose head is <= v.
	b, found := slices.BinarySearch(s.heads, v)
	if found {
		return true
	}
	if b == 0 {
		return false
	}
	b--
	cur := s.heads[b]
	r := bitReader{words: s.words, pos: uint(s.offs[b])}
	end := min(s.n, (b+1)*blockLen)
	for i := b*blockLen + 1; i < end; i++ {
		cur += r.unary()<<s.k | uint32(r.bits(uint(s.k)))
		if cur >= v {
			return cur == v
		}
	}
	return false
}

// appendAll appends the segment's values, in order, to dst.
func (s *riceSeg) appendAll(dst []uint32) []uint32 {
	for b := range s.heads {
		cur := s.heads[b]
		dst = append(dst, cur)
		r := bitReader{words: s.words, pos: uint(s.offs[b])}
		end := min(s.n, (b+1)*blockLen)
		for i := b*blockLen + 1; i < end; i++ {
			cur += r.unary()<<s.k | uint32(r.bits(uint(s.k)))
			dst = append(dst, cur)
		}
	}
	return dst
}

type bitWriter struct {
	words []uint64
	n     uint // bits written
}

// bits writes the low k bits of v.
func (w *bitWriter) bits(v uint64, k uint) {
	if k == 0 {
		return
	}
	v &= 1<<k - 1
	off := w.n % 64
	if off == 0 {
		w.words = append(w.words, 0)
	}
	w.words[len(w.words)-1] |= v << off
	if off+k > 64 {
		w.words = append(w.words, v>>(64-off))
	}
	w.n += k
}

// unary writes q one bits and a zero.
func (w *bitWriter) unary(q uint32) {
	for q >= 32 {
		w.bits(1<<32-1, 32)
		q -= 32
	}
	w.bits(uint64(1)<<q-1, uint(q)+1)
}

type bitReader struct {
	words []uint64
	pos   uint
}

// bits reads k bits (k <= 32).
func (r *bitReader) bits(k uint) uint64 {
	if k == 0 {
		return 0
	}
	i, off := r.pos/64, r.pos%64
	v := r.words[i] >> off
	if off+k > 64 {
		v |= r.words[i+1] << (64 - off)
	}
	r.pos += k
	return v & (1<<k - 1)
}

// unary reads a run of one bits ended by a zero and returns its length.
func (r *bitReader) unary() uint32 {
	var q uint32
	for {
		i, off := r.pos/64, r.pos%64
		w := ^r.words[i] >> off // zeros of the stream are ones here
		if w == 0 {             // all ones to the end of this word
			q += uint32(64 - off)
			r.pos += 64 - off
			continue
		}
		t := uint(bits.TrailingZeros64(w))
		q += uint32(t)
		r.pos += t + 1
		return q
	}
}

// load adds many hashes at once (at open): faster than add, and each
// partition's segment is built once. It overwrites hs.
func (f *fpSet) load(hs []uint64) {
	if len(hs) == 0 {
		return
	}
	fps := hs
	for i, h := range hs {
		fps[i] = (h & f.mask) >> (64 - f.width)
	}
	slices.Sort(fps)
	fps = slices.Compact(fps)
	rb := f.width - partBits
	var rem []uint32
	for i := 0; i < len(fps); {
		p := int(fps[i] >> rb)
		j := i
		rem = rem[:0]
		for ; j < len(fps) && int(fps[j]>>rb) == p; j++ {
			rem = append(rem, uint32(fps[j]&(1<<rb-1)))
		}
		part := &f.parts[p]
		f.grow(part.flush())
		before, held := part.seg.n, part.bytes()
		all := part.seg.appendAll(make([]uint32, 0, part.seg.n+len(rem)))
		all = append(all, rem...)
		slices.Sort(all)
		all = slices.Compact(all)
		part.seg = buildSeg(all)
		f.n += int64(part.seg.n - before)
		f.grow(part.bytes() - held)
		i = j
	}
}
