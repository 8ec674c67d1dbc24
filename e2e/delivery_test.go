package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDeliveryKill9LosesNothing kills tandem with SIGKILL while it is
// delivering to a webhook under load; after the restart every event the
// collection API acknowledged reaches the receiver (duplicates allowed:
// delivery is at least once), each user's events first arriving in the
// order they were sent.
func TestDeliveryKill9LosesNothing(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var order = map[string][][2]int{} // user → (request, index) of first arrivals
	unknown := 0
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// A slow receiver, so that a backlog is in flight at the kill.
		time.Sleep(20 * time.Millisecond)
		var body struct {
			Batch []struct {
				MessageID string `json:"messageId"`
				UserID    string `json:"userId"`
			} `json:"batch"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range body.Batch {
			if seen[e.MessageID] {
				continue
			}
			seen[e.MessageID] = true
			var prefix string
			var c, req, i int
			if _, err := fmt.Sscanf(e.MessageID, "%5s-c%d-r%d-e%d", &prefix, &c, &req, &i); err != nil {
				unknown++
				continue
			}
			order[e.UserID] = append(order[e.UserID], [2]int{req, i})
		}
	}))
	defer rc.Close()

	dir := t.TempDir()
	allow := serverOpts{args: []string{"--destination-allow", "127.0.0.0/8"}}
	s := startServer(t, dir, allow)
	status, body := s.admin("POST", "/api/v1/destinations", map[string]any{"name": "receiver", "type": "webhook",
		"config": map[string]any{"url": rc.URL + "/in", "batch": 20}, "owner": "IT"})
	if status != 201 {
		t.Fatalf("create destination: %d %s", status, body)
	}
	st := newLoadStats()
	stopLoad := startLoad(t, s, "dlvry", st)
	waitAcked(t, st, 5, 20*time.Second)
	time.Sleep(2 * time.Second)
	for i := 0; st.inflight.Load() == 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.exited(10 * time.Second); !ok {
		t.Fatal("still running 10 s after SIGKILL")
	}
	stopLoad()
	t.Logf("SIGKILL after %d events reached the receiver; load: %s", before, st.summary())
	st.mu.Lock()
	if before >= len(st.acked) {
		t.Logf("note: the receiver had caught up before the kill; nothing was in flight")
	}
	st.mu.Unlock()
	s = startServer(t, dir, allow)

	st.mu.Lock()
	acked := make([]string, 0, len(st.acked))
	for id := range st.acked {
		acked = append(acked, id)
	}
	sent := st.sent
	st.mu.Unlock()
	start := time.Now()
	deadline := start.Add(90 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, id := range acked {
			if !seen[id] {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events never reached the receiver", missing, len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every acknowledged event (%d) delivered %s after the restart", len(acked), time.Since(start).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	for id := range seen {
		if !sent[id] {
			t.Errorf("receiver got %s, which was never sent", id)
		}
	}
	if unknown > 0 {
		t.Errorf("%d unexpected messageIds", unknown)
	}
	for user, arr := range order {
		for i := 1; i < len(arr); i++ {
			a, b := arr[i-1], arr[i]
			if b[0] < a[0] || (b[0] == a[0] && b[1] < a[1]) {
				t.Fatalf("user %s: event r%d-e%d arrived after r%d-e%d", user, b[0], b[1], a[0], a[1])
			}
		}
	}
}
