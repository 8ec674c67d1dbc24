package duckdb

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The key index never loses a hash it was given, and finds none it was not
// given, through flushes, background merges, and reopenings from its files
// after a crash: with a torn last log record, a run half written, and a
// merge's inputs left beside its output.
func TestKeyIndexModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := ""
		if rapid.Bool().Draw(rt, "onDisk") {
			dir = filepath.Join(t.TempDir(), "keys")
		}
		flushLen := rapid.IntRange(1, 40).Draw(rt, "flushLen")
		x, err := openKeyIndex(dir, ^uint64(0), flushLen)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { x.close() }()
		model := map[uint64]bool{}
		// Hashes from a small universe, so that lookups hit and miss,
		// with runs of several blocks.
		hash := rapid.Custom(func(t *rapid.T) uint64 {
			return rapid.Uint64Range(0, 5000).Draw(t, "i") * 0x9E3779B97F4A7C15
		})
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op < 5:
				hs := rapid.SliceOfN(hash, 1, 700).Draw(rt, "add")
				if err := x.add(hs); err != nil {
					rt.Fatal(err)
				}
				for _, h := range hs {
					model[h] = true
				}
			case op < 8:
				hs := rapid.SliceOfN(hash, 1, 50).Draw(rt, "lookup")
				got, err := x.containsAny(hs)
				if err != nil {
					rt.Fatal(err)
				}
				var want []uint64
				for _, h := range hs {
					if model[h] {
						want = append(want, h)
					}
				}
				if !slices.Equal(got, want) {
					rt.Fatalf("containsAny(%d hashes) = %v, want %v", len(hs), got, want)
				}
			default:
				if dir == "" {
					continue
				}
				// Reopen, as after a crash: sometimes mid-merge, with
				// leftovers of an interrupted flush or merge.
				if rapid.Bool().Draw(rt, "settle") {
					waitMerges(x)
				}
				x.close()
				crashLeftovers(rt, dir)
				if x, err = openKeyIndex(dir, ^uint64(0), flushLen); err != nil {
					rt.Fatal(err)
				}
			}
		}
		waitMerges(x)
		var all []uint64
		if err := x.each(7, func(c []uint64) { all = append(all, c...) }); err != nil {
			rt.Fatal(err)
		}
		slices.Sort(all)
		all = slices.Compact(all)
		if len(all) != len(model) {
			rt.Fatalf("the index holds %d distinct hashes, want %d", len(all), len(model))
		}
		for _, h := range all {
			if !model[h] {
				rt.Fatalf("the index holds %#x, never added", h)
			}
		}
	})
}

// waitMerges waits until the merger has nothing left to merge.
func waitMerges(x *keyIndex) {
	for range 500 {
		x.mu.RLock()
		pending := false
		for j := len(x.runs) - 2; j >= 0; j-- {
			if x.runs[j].n <= 2*x.runs[j+1].n {
				pending = true
			}
		}
		x.mu.RUnlock()
		if !pending {
			return
		}
		select {
		case x.wake <- struct{}{}:
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// crashLeftovers adds what a crash can leave in an index directory: a
// torn record at the end of the newest log, a run's temporary file, and a
// copy of a run under a name another run covers (a merge's input).
func crashLeftovers(rt *rapid.T, dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		rt.Fatal(err)
	}
	// The log written at the crash is the newest one (the others were
	// complete when the index reopened).
	newest, newestSeq := "", uint64(0)
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), logPrefix); ok {
			if seq, err := strconv.ParseUint(s, 10, 64); err == nil && seq >= newestSeq {
				newest, newestSeq = e.Name(), seq
			}
		}
	}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case name == newest:
			if rapid.Bool().Draw(rt, "tornLog") {
				f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					rt.Fatal(err)
				}
				f.Write([]byte{1, 2, 3}) // 3 of a record's 8 bytes
				f.Close()
			}
		case len(name) > len(runPrefix) && name[:len(runPrefix)] == runPrefix:
			lo, hi, ok := parseRunName(name)
			if !ok {
				continue
			}
			if rapid.Bool().Draw(rt, "tmpRun") {
				os.WriteFile(filepath.Join(dir, runName(hi+100, hi+100)+".tmp"), []byte("partial"), 0o644)
			}
			if lo < hi && rapid.Bool().Draw(rt, "mergeInput") {
				// An input of the merge that made this run: its first
				// part, with one bogus hash the model lacks that must go
				// with it.
				b, err := os.ReadFile(path)
				if err != nil {
					rt.Fatal(err)
				}
				b = b[:len(b)/16*8]
				b = binary.LittleEndian.AppendUint64(b, ^uint64(0)-1)
				os.WriteFile(filepath.Join(dir, runPrefix+strconv.FormatUint(lo, 10)+"-"+strconv.FormatUint(lo, 10)), b, 0o644)
			}
		}
	}
}
