package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// A window whose fill was interrupted has a write-ahead log; the node
// replays it into the shared file, checkpoints and removes its own link.
// The window's link must go too, or the next run replays it again and
// the node refuses to start.
func TestKeepWALAfterNode(t *testing.T) {
	dir := t.TempDir()
	window := filepath.Join(dir, "w.duckdb")
	node := filepath.Join(dir, "node.duckdb")
	if err := os.WriteFile(window+".wal", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The node stopped without a log: the window has none either.
	if err := keepWAL(node+".wal", window+".wal"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(window + ".wal"); !os.IsNotExist(err) {
		t.Fatalf("window's stale log still there: %v", err)
	}

	// The node stopped with a log: the window has that one.
	if err := os.WriteFile(window+".wal", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node+".wal", []byte("node's"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keepWAL(node+".wal", window+".wal"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(window + ".wal")
	if err != nil || string(b) != "node's" {
		t.Fatalf("window's log = %q, %v; want the node's", b, err)
	}

	// Neither has one: nothing to do.
	os.Remove(window + ".wal")
	os.Remove(node + ".wal")
	if err := keepWAL(node+".wal", window+".wal"); err != nil {
		t.Fatal(err)
	}
}
