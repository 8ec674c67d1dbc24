package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	rudder "github.com/rudderlabs/analytics-go/v4"
)

type rudderCallback struct{ *sdkCallback }

func (c rudderCallback) Success(rudder.Message) { c.success() }
func (c rudderCallback) Failure(m rudder.Message, err error) {
	c.failure(fmt.Sprintf("%T", m), err)
}

// TestRudderStackGoSDK sends with RudderStack's Go SDK, which gzips its
// batches and sends no sentAt, and reads every event back.
func TestRudderStackGoSDK(t *testing.T) {
	t.Parallel()
	s := startServer(t, "", serverOpts{})
	srcID := defaultSourceID(t, s)

	ct := &captureTransport{next: http.DefaultTransport}
	cb := &sdkCallback{}
	client, err := rudder.NewWithConfig(s.writeKey, rudder.Config{
		DataPlaneUrl: s.url,
		BatchSize:    3,
		Interval:     50 * time.Millisecond,
		Transport:    ct,
		Callback:     rudderCallback{cb},
		Logger:       testLogger{t},
		RetryAfter:   func(int) time.Duration { return 100 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	run := fmt.Sprintf("rs-%d", time.Now().UnixNano())
	ids := []string{run + "-identify", run + "-track", run + "-page", run + "-screen", run + "-group", run + "-alias"}
	msgs := []rudder.Message{
		rudder.Identify{MessageId: ids[0], UserId: "rs-user-1", Timestamp: at(0),
			Traits: rudder.NewTraits().SetEmail("grace@example.com").Set("plan", "team")},
		rudder.Track{MessageId: ids[1], UserId: "rs-user-1", Event: "Product Viewed", Timestamp: at(1),
			Properties: rudder.NewProperties().SetSKU("sku-9").SetPrice(19.99)},
		rudder.Page{MessageId: ids[2], AnonymousId: "rs-anon-1", Name: "Home", Timestamp: at(2),
			Properties: rudder.NewProperties().SetPath("/")},
		rudder.Screen{MessageId: ids[3], UserId: "rs-user-1", Name: "Settings", Timestamp: at(3)},
		rudder.Group{MessageId: ids[4], UserId: "rs-user-1", GroupId: "globex", Timestamp: at(4),
			Traits: rudder.NewTraits().SetName("Globex")},
		rudder.Alias{MessageId: ids[5], UserId: "rs-user-1", PreviousId: "rs-anon-1", Timestamp: at(5)},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatalf("enqueue %T: %v", m, err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	cb.mu.Lock()
	if len(cb.failures) > 0 || cb.ok != len(msgs) {
		t.Errorf("SDK callbacks: %d succeeded, failures %v; want %d successes", cb.ok, cb.failures, len(msgs))
	}
	cb.mu.Unlock()
	ct.mu.Lock()
	gzipped := 0
	for i, st := range ct.statuses {
		if st != 200 {
			t.Errorf("request %d: status %d", i, st)
		}
		if ct.encoding[i] == "gzip" {
			gzipped++
		}
	}
	if gzipped == 0 {
		t.Errorf("the SDK sent no gzipped request (encodings %q); the test does not cover gzip", ct.encoding)
	}
	t.Logf("rudder analytics-go sent %d requests, %d gzipped", len(ct.statuses), gzipped)
	ct.mu.Unlock()

	sent, _, _ := sentEvents(t, ct)
	if len(sent) != len(msgs) {
		t.Fatalf("captured %d events, want %d", len(sent), len(msgs))
	}
	got := s.waitEvents(ids, 30*time.Second)
	for i, id := range ids {
		g := got[id]
		checkCommon(t, id, g, sent[id], srcID)
		// The SDK fills anonymousId from userId and marks the channel.
		if str(g, "anonymousId") == "" && i != 5 {
			t.Errorf("%s: anonymousId empty; the SDK sent %q", id, str(sent[id], "anonymousId"))
		}
		if str(g, "channel") != "server" {
			t.Errorf("%s: channel = %q, want \"server\"", id, str(g, "channel"))
		}
		if lib, _ := dig(g, "context", "library", "name").(string); lib != "analytics-go" {
			t.Errorf("%s: context.library.name = %q", id, lib)
		}
		// No sentAt: the client's clock is taken as it is.
		if v, ok := g["sentAt"]; ok {
			t.Errorf("%s: sentAt = %v, but the SDK sent none", id, v)
		}
		if ts := timeField(t, g, "timestamp"); !ts.Equal(at(i)) {
			t.Errorf("%s: timestamp = %s, want the client's %s", id, ts, at(i).UTC())
		}
		if ots := timeField(t, g, "originalTimestamp"); !ots.Equal(at(i)) {
			t.Errorf("%s: originalTimestamp = %s, want the client's %s", id, ots, at(i).UTC())
		}
	}
	if e := dig(got[ids[0]], "traits", "email"); e != "grace@example.com" {
		t.Errorf("identify traits.email = %v", e)
	}
	if e := dig(got[ids[1]], "properties", "price"); e != 19.99 {
		t.Errorf("track properties.price = %v", e)
	}
}
