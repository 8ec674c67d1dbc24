package collect

import (
	"testing"
	"time"
)

func TestLimiterPerSource(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(1000, 2500) // burst is raised to one full batch at least
	if ok, _ := l.Allow("a", 2500, now); !ok {
		t.Fatal("a full burst was refused")
	}
	ok, retry := l.Allow("a", 2000, now)
	if ok || retry != 2 {
		t.Fatalf("over the limit: ok=%v retry=%d, want refused with Retry-After 2", ok, retry)
	}
	if ok, _ := l.Allow("b", 100, now); !ok {
		t.Error("source b was limited by source a's traffic")
	}
	if ok, _ := l.Allow("a", 1000, now.Add(time.Second)); !ok {
		t.Error("tokens did not refill after a second")
	}
	if NewLimiter(0, 0) != nil {
		t.Error("rate 0 should mean no limiter")
	}
	var none *Limiter
	if ok, _ := none.Allow("a", 1e6, now); !ok {
		t.Error("a nil limiter refused")
	}
}
