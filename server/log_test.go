package server

import (
	"testing"

	"tandem/config"
)

func TestLogReplicas(t *testing.T) {
	for _, tc := range []struct {
		log      string
		replicas int
		want     int
	}{
		{"nats://a:4222", 0, 1},
		{"nats://a:4222,b:4222", 0, 1},
		{"nats://a:4222,b:4222,c:4222", 0, 3},
		{"nats://a:4222,b:4222,c:4222,d:4222,e:4222", 0, 3},
		{"nats://a:4222", 3, 3},
		{"nats://a:4222,b:4222,c:4222", 1, 1},
	} {
		cfg := config.Default()
		cfg.Log, cfg.LogReplicas = tc.log, tc.replicas
		if got := logReplicas(cfg); got != tc.want {
			t.Errorf("log %q, log_replicas %d: %d replicas, want %d", tc.log, tc.replicas, got, tc.want)
		}
	}
}
