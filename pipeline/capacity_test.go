package pipeline

import (
	"math"
	"testing"
	"time"
)

// TestCapacityMeter checks the pipeline's measure of its pace: unknown
// until every stage handled a large batch, set by the slowest stage, deaf
// to small batches (whose per-batch costs say nothing of the pace under
// load), and lowered by commits made while a backlog waited.
func TestCapacityMeter(t *testing.T) {
	var c capacityMeter
	const mb = 1 << 20
	c.batch(capDecode, 4*mb, 40*time.Millisecond)
	c.batch(capState, 4*mb, 100*time.Millisecond)
	if r := c.rate(); r != 0 {
		t.Fatalf("rate %.0f before the write stage measured a batch, want 0 (unknown)", r)
	}
	c.batch(capWrite, 4*mb, 80*time.Millisecond)
	want := 4 * mb / 0.1 // the state stage's 40 MiB/s
	if r := c.rate(); math.Abs(r-want) > 1 {
		t.Fatalf("rate %.0f, want the slowest stage's %.0f", r, want)
	}
	// A trickle of small, slow batches leaves it as it was.
	for range 100 {
		c.batch(capState, 10_000, 20*time.Millisecond)
	}
	if r := c.rate(); math.Abs(r-want) > 1 {
		t.Fatalf("rate %.0f after small batches, want %.0f still", r, want)
	}
	// A commit under a backlog counts against the write stage: 80 ms +
	// 120 ms for 4 MiB makes it the slowest.
	c.extra(capWrite, 120*time.Millisecond)
	if r, want := c.rate(), 4*mb/0.2; math.Abs(r-want) > 1 {
		t.Fatalf("rate %.0f after a commit, want %.0f", r, want)
	}
	// New large batches take over from older ones.
	for range 30 {
		c.batch(capDecode, 4*mb, 10*time.Millisecond)
		c.batch(capState, 4*mb, 20*time.Millisecond)
		c.batch(capWrite, 4*mb, 20*time.Millisecond)
	}
	if r, want := c.rate(), 4*mb/0.02; math.Abs(r-want)/want > 0.01 {
		t.Fatalf("rate %.0f after faster batches, want about %.0f", r, want)
	}
}
