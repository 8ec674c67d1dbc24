package duckdb

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// keyIndex is the exact dedup index: the key_hash of every stored event
// (and possibly of some events that are not stored: see below), in sorted
// runs on disk beside the database file, and the most recent ones in
// memory. The in-memory filter (fpSet) answers most lookups; the filter's
// "maybe"s, about n/2^width of the new keys, are looked up here, one read
// of a 4 KiB block per run, instead of a scan of the events table.
//
// # Files
//
// The index lives in the directory <database file>.keys:
//
//   - log-<seq>: the hashes added since the last flush, appended (8 bytes
//     each, little endian) as batches are appended or staged, and synced
//     before the transaction that holds them commits in DuckDB (Append
//     syncs at once, Stage at its commits, once a row group);
//   - run-<lo>-<hi>: sorted, distinct hashes (8 bytes each, little
//     endian) of the logs lo to hi; written to a temporary file, synced,
//     renamed;
//   - *.tmp: a run being written; removed at open.
//
// When the in-memory part reaches flushLen hashes it is written as a run
// and its logs are removed. A background merger merges two adjacent runs
// when the older is at most twice the newer, so that about log2(n/flushLen)
// runs exist and every hash is rewritten about as many times. A merged run
// covers the seqs of both; at open, a run whose seqs another run covers is
// a leftover of a merge cut short and is removed, as are the logs a run
// covers.
//
// # Consistency with the events table
//
// The index holds a superset of the stored keys: a key is added (and its
// log synced) before the transaction that stores its event commits, so a
// crash at any point leaves every committed event's key in the index. A key
// in the index whose event is not stored (a failed or rolled back batch,
// an erased or expired event) is harmless: the index's hits are checked
// exactly against the table (Append's dropStored), so they cost a query,
// never an event. Open rebuilds the index from the table when it is
// missing or holds fewer hashes than the table has rows (a store written
// by an older build), or when it holds many more (erasures and
// retention): see [keyIndex.stale].
//
// The merger runs concurrently with lookups and adds; mu guards runs.
// Adds, lookups and flushes are serialized by the Store's wmu.
type keyIndex struct {
	dir      string // "" keeps everything in memory (in-memory stores)
	mask     uint64 // applied to every hash (all ones but in tests)
	flushLen int

	mu   sync.RWMutex
	runs []*keyRun // oldest first; each covers seqs after the previous's
	// recent holds the hashes added since the last flush, sorted, masked.
	recent []uint64
	// recentLo is the first seq the logs of recent cover; seq the current
	// log's.
	recentLo, seq uint64
	log           *os.File
	dirty         bool // log written since its last sync

	// The merger: wake signals a flush, stop asks it to end; done is
	// closed when it has. mergeErr is the error of the last merge, kept
	// for the next add to report (the index stays correct without the
	// merge, but a disk that fails writes should be noticed).
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	mergeErr error // guarded by mu

	// reads counts the blocks read by lookups (guarded by wmu).
	reads int64
}

// keyRun is a sorted run of distinct hashes: a file, or a slice in memory.
type keyRun struct {
	lo, hi uint64 // the seqs it covers
	n      int64
	mem    []uint64
	path   string
	f      *os.File
	fences []uint64 // the first hash of each block of runBlock hashes
}

const (
	// runBlock is the number of hashes per block of a run file: a lookup
	// reads one block (4 KiB).
	runBlock = 512
	// defaultFlushLen is how many recent hashes are held in memory before
	// they are written as a run: 2 MiB (a quarter million hashes: at 100
	// million stored, about 9 runs, so a lookup that misses reads about 9
	// blocks; 8 MiB held would save one or two of them).
	defaultFlushLen = 1 << 18
	logPrefix       = "log-"
	runPrefix       = "run-"
)

// indexDir returns the directory of a database file's key index.
func indexDir(file string) string { return file + ".keys" }

// openKeyIndex opens the index in dir (creating it) or, with dir "", an
// empty in-memory index, and starts its merger.
func openKeyIndex(dir string, mask uint64, flushLen int) (*keyIndex, error) {
	x := &keyIndex{dir: dir, mask: mask, flushLen: flushLen, seq: 1, recentLo: 1,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if dir != "" {
		if err := x.load(); err != nil {
			x.closeFiles()
			return nil, err
		}
	}
	go x.merger()
	return x, nil
}

// load reads the directory: runs (removing merge leftovers), unflushed
// logs into recent, and opens a new log.
func (x *keyIndex) load() error {
	if err := os.MkdirAll(x.dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(x.dir)
	if err != nil {
		return err
	}
	var runs []*keyRun
	var logs []uint64
	maxSeq := uint64(0)
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			if err := os.Remove(filepath.Join(x.dir, name)); err != nil {
				return err
			}
		case strings.HasPrefix(name, runPrefix):
			lo, hi, ok := parseRunName(name)
			if !ok {
				continue
			}
			runs = append(runs, &keyRun{lo: lo, hi: hi, path: filepath.Join(x.dir, name)})
			maxSeq = max(maxSeq, hi)
		case strings.HasPrefix(name, logPrefix):
			s, err := strconv.ParseUint(strings.TrimPrefix(name, logPrefix), 10, 64)
			if err != nil {
				continue
			}
			logs = append(logs, s)
			maxSeq = max(maxSeq, s)
		}
	}
	// Runs covered by another (a merge's inputs, left by a crash between
	// the rename of its output and their removal) go.
	slices.SortFunc(runs, func(a, b *keyRun) int {
		if a.lo != b.lo {
			return cmpU64(a.lo, b.lo)
		}
		return cmpU64(b.hi, a.hi) // the widest first
	})
	var kept []*keyRun
	for _, r := range runs {
		if len(kept) > 0 && r.hi <= kept[len(kept)-1].hi {
			if err := os.Remove(r.path); err != nil {
				return err
			}
			continue
		}
		kept = append(kept, r)
	}
	for _, r := range kept {
		if err := r.open(); err != nil {
			return err
		}
	}
	x.runs = kept
	covered := func(s uint64) bool {
		for _, r := range kept {
			if r.lo <= s && s <= r.hi {
				return true
			}
		}
		return false
	}
	slices.Sort(logs)
	x.recentLo = maxSeq + 1
	for _, s := range logs {
		path := filepath.Join(x.dir, logPrefix+strconv.FormatUint(s, 10))
		if covered(s) {
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// A torn last record (a crash during the write) is dropped: its
		// batch never committed.
		for i := 0; i+8 <= len(b); i += 8 {
			x.recent = append(x.recent, binary.LittleEndian.Uint64(b[i:])&x.mask)
		}
		x.recentLo = min(x.recentLo, s)
	}
	slices.Sort(x.recent)
	x.recent = slices.Compact(x.recent)
	x.seq = maxSeq + 1
	return x.openLog()
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func parseRunName(name string) (lo, hi uint64, ok bool) {
	a, b, ok := strings.Cut(strings.TrimPrefix(name, runPrefix), "-")
	if !ok {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	return lo, hi, err1 == nil && err2 == nil && lo <= hi
}

func runName(lo, hi uint64) string {
	return runPrefix + strconv.FormatUint(lo, 10) + "-" + strconv.FormatUint(hi, 10)
}

// openLog creates the log of x.seq.
func (x *keyIndex) openLog() error {
	f, err := os.OpenFile(filepath.Join(x.dir, logPrefix+strconv.FormatUint(x.seq, 10)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	x.log = f
	return syncDir(x.dir)
}

// open opens a run file and reads its fences.
func (r *keyRun) open() error {
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f = f
	r.n = st.Size() / 8
	blocks := (r.n + runBlock - 1) / runBlock
	r.fences = make([]uint64, 0, blocks)
	var b [8]byte
	for i := int64(0); i < blocks; i++ {
		if _, err := f.ReadAt(b[:], i*runBlock*8); err != nil {
			f.Close()
			return fmt.Errorf("read %s: %w", r.path, err)
		}
		r.fences = append(r.fences, binary.LittleEndian.Uint64(b[:]))
	}
	return nil
}

// contains reports whether h is in the run; buf is scratch space of
// runBlock*8 bytes.
func (r *keyRun) contains(h uint64, buf []byte) (bool, error) {
	if r.mem != nil {
		_, ok := slices.BinarySearch(r.mem, h)
		return ok, nil
	}
	// The last block whose first hash is <= h.
	b, found := slices.BinarySearch(r.fences, h)
	if found {
		return true, nil
	}
	if b == 0 {
		return false, nil
	}
	b--
	n := min(int64(runBlock), r.n-int64(b)*runBlock)
	buf = buf[:n*8]
	if _, err := r.f.ReadAt(buf, int64(b)*runBlock*8); err != nil {
		return false, fmt.Errorf("read %s: %w", r.path, err)
	}
	lo, hi := 0, int(n)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if binary.LittleEndian.Uint64(buf[m*8:]) < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo < int(n) && binary.LittleEndian.Uint64(buf[lo*8:]) == h, nil
}

// bytes returns the memory a run holds.
func (r *keyRun) bytes() int64 { return int64(cap(r.mem))*8 + int64(cap(r.fences))*8 }

// reader returns the run's hashes in order.
func (r *keyRun) reader() func() (uint64, bool, error) {
	if r.mem != nil {
		i := 0
		return func() (uint64, bool, error) {
			if i == len(r.mem) {
				return 0, false, nil
			}
			i++
			return r.mem[i-1], true, nil
		}
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r.f, 0, r.n*8), 1<<20)
	var b [8]byte
	return func() (uint64, bool, error) {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, false, nil
			}
			return 0, false, fmt.Errorf("read %s: %w", r.path, err)
		}
		return binary.LittleEndian.Uint64(b[:]), true, nil
	}
}

func (r *keyRun) close() {
	if r.f != nil {
		r.f.Close()
	}
}

// runWriter writes a run: to a temporary file in dir, or to memory.
type runWriter struct {
	r    *keyRun
	tmp  string
	f    *os.File
	bw   *bufio.Writer
	last uint64
	b    [8]byte
}

func newRunWriter(dir string, lo, hi uint64, sizeHint int) (*runWriter, error) {
	w := &runWriter{r: &keyRun{lo: lo, hi: hi}}
	if dir == "" {
		w.r.mem = make([]uint64, 0, sizeHint)
		return w, nil
	}
	w.r.path = filepath.Join(dir, runName(lo, hi))
	w.tmp = w.r.path + ".tmp"
	f, err := os.Create(w.tmp)
	if err != nil {
		return nil, err
	}
	w.f, w.bw = f, bufio.NewWriterSize(f, 1<<20)
	w.r.fences = make([]uint64, 0, (sizeHint+runBlock-1)/runBlock)
	return w, nil
}

// put appends h, which must not be below the last one; a repeat is
// dropped.
func (w *runWriter) put(h uint64) error {
	if w.r.n > 0 && h == w.last {
		return nil
	}
	w.last = h
	if w.r.mem != nil || w.f == nil {
		w.r.mem = append(w.r.mem, h)
		w.r.n++
		return nil
	}
	if w.r.n%runBlock == 0 {
		w.r.fences = append(w.r.fences, h)
	}
	w.r.n++
	binary.LittleEndian.PutUint64(w.b[:], h)
	_, err := w.bw.Write(w.b[:])
	return err
}

// finish makes the run durable under its name and opens it for reading.
func (w *runWriter) finish() (*keyRun, error) {
	if w.f == nil {
		return w.r, nil
	}
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.tmp, w.r.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(w.r.path))
	}
	if err != nil {
		w.abort()
		return nil, err
	}
	f, err := os.Open(w.r.path)
	if err != nil {
		return nil, err
	}
	w.r.f = f
	return w.r, nil
}

// abort removes the temporary file.
func (w *runWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.tmp)
	}
}

// add records hashes (unmasked) of keys about to be committed: in the
// log, synced, and in recent; it flushes recent to a run when it is full.
// The caller holds wmu.
func (x *keyIndex) add(hs []uint64) error {
	if len(hs) == 0 {
		return nil
	}
	// A failed merge is reported once (the index is correct without it;
	// the next flush tries again).
	x.mu.Lock()
	mergeErr := x.mergeErr
	x.mergeErr = nil
	x.mu.Unlock()
	if mergeErr != nil {
		return fmt.Errorf("dedup index: merge: %w", mergeErr)
	}
	masked := make([]uint64, len(hs))
	for i, h := range hs {
		masked[i] = h & x.mask
	}
	if x.log != nil {
		b := make([]byte, 8*len(masked))
		for i, h := range masked {
			binary.LittleEndian.PutUint64(b[i*8:], h)
		}
		if _, err := x.log.Write(b); err != nil {
			return fmt.Errorf("dedup index: write log: %w", err)
		}
		x.dirty = true
	}
	slices.Sort(masked)
	x.recent = mergeSorted(x.recent, masked)
	if len(x.recent) >= x.flushLen {
		return x.flush()
	}
	return nil
}

// sync makes the log durable. The caller holds wmu.
func (x *keyIndex) sync() error {
	if !x.dirty || x.log == nil {
		return nil
	}
	if err := x.log.Sync(); err != nil {
		return fmt.Errorf("dedup index: sync log: %w", err)
	}
	x.dirty = false
	return nil
}

// mergeSorted returns the sorted union of a and b (both sorted), without
// repeats, reusing a's memory when it can.
func mergeSorted(a, b []uint64) []uint64 {
	b = slices.Compact(b)
	n := len(a)
	a = slices.Grow(a, len(b))[:n+len(b)]
	// Merge from the back into a.
	i, j, k := n-1, len(b)-1, n+len(b)-1
	for j >= 0 {
		if i >= 0 && a[i] > b[j] {
			a[k] = a[i]
			i--
		} else {
			a[k] = b[j]
			j--
		}
		k--
	}
	return slices.Compact(a)
}

// flush writes recent as a run, removes the logs it covers and starts a
// new log. The caller holds wmu.
func (x *keyIndex) flush() error {
	lo, hi := x.recentLo, x.seq
	w, err := newRunWriter(x.dir, lo, hi, len(x.recent))
	if err != nil {
		return fmt.Errorf("dedup index: flush: %w", err)
	}
	for _, h := range x.recent {
		if err := w.put(h); err != nil {
			w.abort()
			return fmt.Errorf("dedup index: flush: %w", err)
		}
	}
	r, err := w.finish()
	if err != nil {
		return fmt.Errorf("dedup index: flush: %w", err)
	}
	if x.log != nil {
		x.log.Close()
		x.log, x.dirty = nil, false
		for s := lo; s <= hi; s++ {
			if err := os.Remove(filepath.Join(x.dir, logPrefix+strconv.FormatUint(s, 10))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("dedup index: flush: %w", err)
			}
		}
	}
	x.mu.Lock()
	x.runs = append(x.runs, r)
	x.mu.Unlock()
	if x.mem() {
		x.recent = nil
	} else {
		x.recent = x.recent[:0]
	}
	x.seq = hi + 1
	x.recentLo = x.seq
	if x.dir != "" {
		if err := x.openLog(); err != nil {
			return fmt.Errorf("dedup index: flush: %w", err)
		}
	}
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return nil
}

func (x *keyIndex) mem() bool { return x.dir == "" }

// containsAny returns those of hs (unmasked, any order) that are in the
// index. The caller holds wmu.
func (x *keyIndex) containsAny(hs []uint64) ([]uint64, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []uint64
	buf := make([]byte, runBlock*8)
	for _, h := range hs {
		m := h & x.mask
		if _, ok := slices.BinarySearch(x.recent, m); ok {
			out = append(out, h)
			continue
		}
		for i := len(x.runs) - 1; i >= 0; i-- {
			r := x.runs[i]
			if r.mem == nil {
				x.reads++
			}
			ok, err := r.contains(m, buf)
			if err != nil {
				return nil, fmt.Errorf("dedup index: %w", err)
			}
			if ok {
				out = append(out, h)
				break
			}
		}
	}
	return out, nil
}

// each calls fn with the index's hashes in chunks of sorted hashes (the
// chunks of different runs overlap); fn may modify a chunk. The caller
// holds wmu.
func (x *keyIndex) each(chunk int, fn func([]uint64)) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	runs := x.runs
	buf := make([]uint64, 0, chunk)
	for _, r := range runs {
		next := r.reader()
		for {
			h, ok, err := next()
			if err != nil {
				return fmt.Errorf("dedup index: %w", err)
			}
			if !ok {
				break
			}
			buf = append(buf, h)
			if len(buf) == chunk {
				fn(buf)
				buf = buf[:0]
			}
		}
		if len(buf) > 0 {
			fn(buf)
			buf = buf[:0]
		}
	}
	if len(x.recent) > 0 {
		fn(slices.Clone(x.recent))
	}
	return nil
}

// count returns the number of hashes held (a hash may be counted in more
// than one run).
func (x *keyIndex) count() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := int64(len(x.recent))
	for _, r := range x.runs {
		n += r.n
	}
	return n
}

// runCount returns the number of runs.
func (x *keyIndex) runCount() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.runs)
}

// bytes returns the memory the index holds: recent and the runs' fences.
func (x *keyIndex) bytes() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	b := int64(cap(x.recent)) * 8
	for _, r := range x.runs {
		b += r.bytes()
	}
	return b
}

// merger merges runs in the background until stop is closed.
func (x *keyIndex) merger() {
	defer close(x.done)
	for {
		select {
		case <-x.stop:
			return
		case <-x.wake:
		}
		for {
			merged, err := x.mergeOnce()
			if err != nil {
				x.mu.Lock()
				x.mergeErr = err
				x.mu.Unlock()
				break
			}
			if !merged {
				break
			}
		}
	}
}

// errStopped ends a merge when the index closes.
var errStopped = errors.New("dedup index: closed")

// mergeOnce merges the newest adjacent pair of runs whose older run is at
// most twice the newer, if any, and reports whether it did.
func (x *keyIndex) mergeOnce() (bool, error) {
	x.mu.RLock()
	i := -1
	for j := len(x.runs) - 2; j >= 0; j-- {
		if x.runs[j].n <= 2*x.runs[j+1].n {
			i = j
			break
		}
	}
	var a, b *keyRun
	if i >= 0 {
		a, b = x.runs[i], x.runs[i+1]
	}
	x.mu.RUnlock()
	if i < 0 {
		return false, nil
	}
	w, err := newRunWriter(x.dir, a.lo, b.hi, int(a.n+b.n))
	if err != nil {
		return false, err
	}
	na, nb := a.reader(), b.reader()
	ha, oka, err := na()
	if err != nil {
		w.abort()
		return false, err
	}
	hb, okb, err := nb()
	if err != nil {
		w.abort()
		return false, err
	}
	for k := 0; oka || okb; k++ {
		if k%(1<<16) == 0 {
			select {
			case <-x.stop:
				w.abort()
				return false, nil
			default:
			}
		}
		var h uint64
		if okb && (!oka || hb < ha) {
			h = hb
			hb, okb, err = nb()
		} else {
			h = ha
			ha, oka, err = na()
		}
		if err != nil {
			w.abort()
			return false, err
		}
		if err := w.put(h); err != nil {
			w.abort()
			return false, err
		}
	}
	r, err := w.finish()
	if err != nil {
		return false, err
	}
	x.mu.Lock()
	// Only flushes append runs meanwhile: a and b are still at i.
	x.runs = slices.Replace(x.runs, i, i+2, r)
	x.mu.Unlock()
	for _, old := range []*keyRun{a, b} {
		old.close()
		if old.path != "" {
			if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return true, err
			}
		}
	}
	return true, nil
}

// closeFiles closes the log and the runs.
func (x *keyIndex) closeFiles() {
	if x.log != nil {
		x.log.Close()
		x.log = nil
	}
	for _, r := range x.runs {
		r.close()
	}
}

// close stops the merger (a merge under way is abandoned) and closes the
// files. The caller holds wmu.
func (x *keyIndex) close() {
	close(x.stop)
	<-x.done
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closeFiles()
	x.runs = nil
	x.recent = nil
}

// syncDir syncs a directory, making renames and creations in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
