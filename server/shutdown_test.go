package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/config"
	"tandem/event"
	"tandem/eventlog"
)

// failingLog is the node's real event log whose appends, once armed, wait
// for release and then fail as a disk that stopped taking writes would.
type failingLog struct {
	eventlog.Log
	mu      sync.Mutex
	armed   bool
	entered chan struct{} // closed when an armed Append started
	release chan struct{} // closed to let it fail
}

var errDiskGone = fmt.Errorf("%w: fsync: input/output error", eventlog.ErrUnavailable)

func (l *failingLog) Append(ctx context.Context, rec []byte) (uint64, error) {
	l.mu.Lock()
	armed := l.armed
	if armed {
		l.armed = false
		close(l.entered)
	}
	l.mu.Unlock()
	if !armed {
		return l.Log.Append(ctx, rec)
	}
	<-l.release
	return 0, errDiskGone
}

// TestShutdownReportsFailedFlush: a record the committer is still writing
// when the node stops, and whose append fails, makes Serve (and so `tandem
// serve`) fail instead of reporting a clean stop.
func TestShutdownReportsFailedFlush(t *testing.T) {
	fl := &failingLog{entered: make(chan struct{}), release: make(chan struct{})}
	var stopErr error
	var n *node
	// Fail once the committer is closing: it then refuses new appends.
	failInFlush := func() {
		c := n.srv.Committer
		go func() {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				err := c.Append(ctx, event.AppendEntries(nil, "probe", []event.Event{{MessageID: "probe"}}, nil)) // withdrawn if queued
				cancel()
				if errors.Is(err, eventlog.ErrClosed) {
					close(fl.release)
					return
				}
			}
		}()
	}
	n = startNodeWith(t, "", func(c *config.Config) { c.Pipeline = false },
		hooks{
			wrapLog:     func(l eventlog.Log) eventlog.Log { fl.Log = l; return fl },
			beforeClose: failInFlush,
		},
		func(err error) { stopErr = err })

	fl.mu.Lock()
	fl.armed = true
	fl.mu.Unlock()
	// A client sends, and goes away while its record is being written:
	// the request ends, the record is still in the committer's hands.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", n.url+"/v1/track",
			strings.NewReader(`{"userId":"u1","event":"Last","messageId":"m-last"}`))
		req.SetBasicAuth(n.writeKey, "")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-fl.entered
	cancel()
	<-done

	n.stop()
	if stopErr == nil {
		t.Fatal("Serve returned nil although the final flush failed")
	}
	if !errors.Is(stopErr, eventlog.ErrUnavailable) || !strings.Contains(stopErr.Error(), "final flush") {
		t.Fatalf("Serve: %v, want the final flush's failure", stopErr)
	}
	t.Logf("Serve: %v", stopErr)
}

// TestShutdownCleanIsNil: a node stopped with nothing failing reports a
// clean stop (the check above is not always failing).
func TestShutdownCleanIsNil(t *testing.T) {
	var stopErr error
	n := startNodeWith(t, "", nil, hooks{}, func(err error) { stopErr = err })
	if r := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u1","event":"One"}`), nil); r.status != 200 {
		t.Fatalf("track: %d %s", r.status, r.body)
	}
	n.stop()
	if stopErr != nil {
		t.Fatalf("Serve after a clean stop: %v", stopErr)
	}
}

// TestPipelineFailureStopsNode: a pipeline that stops with an error stops
// the node, and Serve returns that error.
func TestPipelineFailureStopsNode(t *testing.T) {
	boom := errors.New("event store rejected the schema")
	stopped := make(chan error, 1)
	n := startNodeWith(t, "", nil, hooks{
		runPipeline: func(context.Context) error { return boom },
	}, func(err error) { stopped <- err })
	// The node stops by itself: its listener closes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(n.url + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the node still serves 30 s after its pipeline failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.stop()
	if err := <-stopped; !errors.Is(err, boom) || !strings.Contains(err.Error(), "pipeline") {
		t.Fatalf("Serve: %v, want the pipeline's error", err)
	}
}
