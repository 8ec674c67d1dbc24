package testserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNATSCluster: three nodes form a JetStream cluster that syncs every
// write; a killed node comes back on the same ports with its data.
func TestNATSCluster(t *testing.T) {
	c := StartNATSCluster(t, 3)
	if got := strings.Count(c.URL(), "nats://127.0.0.1:"); got != 3 {
		t.Fatalf("URL() = %q, want three nats:// URLs", c.URL())
	}
	for i := range c.Size() {
		var jsz struct {
			Config struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
			Meta struct {
				Size int `json:"cluster_size"`
			} `json:"meta_cluster"`
		}
		getJSON(t, c.MonitorURL(i)+"/jsz", &jsz)
		if !jsz.Config.SyncAlways {
			t.Errorf("node %d: JetStream does not sync every write", i)
		}
		if jsz.Meta.Size != 3 {
			t.Errorf("node %d: meta cluster size %d, want 3", i, jsz.Meta.Size)
		}
	}
	c.Kill(1)
	if c.Running(1) {
		t.Fatal("node 1 running after Kill")
	}
	if err := c.WaitMetaLeader(30 * time.Second); err != nil {
		t.Fatalf("two of three nodes: %v", err)
	}
	c.Restart(1)
	if !c.Running(1) {
		t.Fatal("node 1 not running after Restart")
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
