package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	jsapi "github.com/nats-io/nats.go/jetstream"

	"tandem/delivery"
	"tandem/governance"
)

// TestNATSDestination publishes to a JetStream subject on a separate NATS
// server listening on loopback: every event arrives once, in order per
// user, with its messageId as Nats-Msg-Id.
func TestNATSDestination(t *testing.T) {
	ctx := context.Background()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jsapi.New(nc)
	stream, err := js.CreateStream(ctx, jsapi.StreamConfig{Name: "OUT", Subjects: []string{"out.events"}, Duplicates: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 50, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, "127.0.0.0/8")
	d, err := r.gov.CreateDestination(ctx, governance.Destination{Name: "bus", Type: "nats",
		Config: map[string]any{"url": srv.ClientURL(), "subject": "out.events", "batch": 20}, Owner: "IT"}, r.admin)
	if err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	time.Sleep(200 * time.Millisecond)
	var ids []string
	for range 5 {
		ids = append(ids, r.send(users, 10)...)
	}
	waitFor(t, "the stream to hold every event", 20*time.Second, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(len(ids))
	})
	time.Sleep(200 * time.Millisecond)
	cons, err := stream.OrderedConsumer(ctx, jsapi.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(len(ids)+10, jsapi.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	last := map[string]string{}
	for m := range batch.Messages() {
		var e map[string]any
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		id, user := e["messageId"].(string), e["userId"].(string)
		if m.Headers().Get("Nats-Msg-Id") != id {
			t.Errorf("Nats-Msg-Id %q for %s", m.Headers().Get("Nats-Msg-Id"), id)
		}
		if seen[id] {
			t.Errorf("%s published twice", id)
		}
		seen[id] = true
		if id < last[user] {
			t.Errorf("user %s: %s after %s", user, id, last[user])
		}
		last[user] = id
	}
	if len(seen) != len(ids) {
		t.Fatalf("stream holds %d distinct events, want %d", len(seen), len(ids))
	}
	var out string
	for _, a := range r.m.Deliveries(d.ID, 1) {
		out = a.Status
	}
	if out != "delivered" {
		t.Errorf("last delivery %q", out)
	}
}

func TestNATSConfig(t *testing.T) {
	m, err := delivery.New(delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg   map[string]any
		field string
	}{
		{map[string]any{"subject": "a"}, "config.url"},
		{map[string]any{"url": "http://x.example:4222", "subject": "a"}, "config.url"},
		{map[string]any{"url": "nats://127.0.0.1:4222", "subject": "a"}, "config.url"},
		{map[string]any{"url": "nats://2130706433:4222", "subject": "a"}, "config.url"},
		{map[string]any{"url": "nats://x.example:4222"}, "config.subject"},
		{map[string]any{"url": "nats://x.example:4222", "subject": "a.*"}, "config.subject"},
	} {
		_, err := m.Types().CheckConfig("nats", tc.cfg, nil)
		var fe *governance.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%v: %v, want a FieldError for %s", tc.cfg, err, tc.field)
		}
	}
	got, err := m.Types().CheckConfig("nats", map[string]any{"url": "nats://bus.example:4222", "subject": "crm.events", "token": "t"}, nil)
	if err != nil || got["batch"] != 100 || fmt.Sprint(m.Types().Secrets("nats")) != "[token]" {
		t.Fatalf("%v %v", got, err)
	}
}

// TestNATSGuard: a NATS server on loopback is not reached without
// --destination-allow, even by a name that resolves to loopback.
func TestNATSGuard(t *testing.T) {
	ctx := context.Background()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	r := newRig(t, delivery.RetryPolicy{MaxAttempts: 3, Base: 5 * time.Millisecond})
	port := srv.Addr().(interface{ String() string }).String()
	port = port[len("127.0.0.1:"):]
	d, err := r.gov.CreateDestination(ctx, governance.Destination{Name: "bus", Type: "nats",
		Config: map[string]any{"url": "nats://localhost:" + port, "subject": "out.events"}, Owner: "IT"}, r.admin)
	if err != nil {
		t.Fatal(err)
	}
	r.m.Refresh()
	time.Sleep(200 * time.Millisecond)
	ids := r.send([]string{"ann"}, 2)
	waitFor(t, "dead letters", 10*time.Second, func() bool {
		dls, _ := r.m.DeadLetters(ctx, d.ID, 10, "")
		return len(dls) == len(ids)
	})
	dls, _ := r.m.DeadLetters(ctx, d.ID, 10, "")
	if srv.NumClients() != 0 || srv.NumSlowConsumers() != 0 {
		t.Errorf("clients: %d", srv.NumClients())
	}
	t.Logf("dead letter after %d attempts: %s", dls[0].Attempts, dls[0].LastError)
	if !strings.Contains(dls[0].LastError, "refused") {
		t.Errorf("last error %q", dls[0].LastError)
	}
	if vz, _ := srv.Varz(nil); vz.TotalConnections != 0 {
		t.Errorf("the NATS server saw %d connections", vz.TotalConnections)
	}
}
