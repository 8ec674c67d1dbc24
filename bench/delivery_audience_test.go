package bench

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The receiver takes a profile's "Audience Entered" by userId, ignores other
// events and later copies, and the latency is counted from that profile's 200.
func TestReceiverAudienceEntered(t *testing.T) {
	r, err := startReceiver("audience", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	acked := map[string]time.Time{"a": time.Now(), "b": time.Now(), "c": time.Now()}
	post := func(body string) {
		resp, err := http.Post(r.url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("receiver answered %d", resp.StatusCode)
		}
	}
	post(`{"batch":[{"type":"track","event":"Order Completed","userId":"c","messageId":"m1"},
		{"type":"track","event":"Audience Entered","userId":"a","messageId":"m2"},
		{"type":"track","event":"Audience Exited","userId":"b","messageId":"m3"}]}`)
	if n := r.notEntered(acked); n != 2 {
		t.Errorf("not entered = %d, want 2 (b exited, c only ordered)", n)
	}
	time.Sleep(20 * time.Millisecond)
	post(`{"batch":[{"type":"track","event":"Audience Entered","userId":"a","messageId":"m4"},
		{"type":"track","event":"Audience Entered","userId":"b","messageId":"m5"}]}`)
	n, p50, _, mx := r.enteredLatency(acked)
	if n != 2 || r.notEntered(acked) != 1 {
		t.Fatalf("entered = %d, not entered = %d; want 2 and 1", n, r.notEntered(acked))
	}
	if p50 <= 0 || mx < 20*time.Millisecond {
		t.Errorf("p50 %v, max %v: want b's later arrival to count, a's first copy to be kept", p50, mx)
	}
	if a := r.entered["a"]; r.entered["b"].Sub(a) < 20*time.Millisecond {
		t.Errorf("a's second copy replaced the first")
	}
}
