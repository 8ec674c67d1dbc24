package config

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedence(t *testing.T) {
	c, err := Load([]string{"--addr", "127.0.0.1:9999", "--config", "testdata/good.yaml"},
		env(map[string]string{"TANDEM_ADDR": "127.0.0.1:7777", "TANDEM_DATA_DIR": "/from/env"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" {
		t.Errorf("flag should beat env and file: addr = %s", c.Addr)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("env should beat file: data_dir = %s", c.DataDir)
	}
	if c.LogMaxAge != 48*time.Hour || len(c.DestinationAllow) != 1 {
		t.Errorf("file values lost: %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "./tandem-data" || c.Addr != "127.0.0.1:8080" || c.LogSync != "always" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestBad(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		key  string
		msg  string
	}{
		{args: []string{"--config", "testdata/log_sync.bad.yaml"}, key: "log_sync", msg: "before they are on disk"},
		{args: []string{"--config", "testdata/unknown_key.bad.yaml"}, key: "testdata/unknown_key.bad.yaml", msg: "field fsync not found"},
		{args: []string{"--config", "testdata/allow.bad.yaml"}, key: "destination_allow", msg: "not a CIDR"},
		{args: []string{"--log-sync", "never"}, key: "log_sync", msg: "fsync"},
		{env: map[string]string{"TANDEM_LOG_SYNC": "2m"}, key: "log_sync"},
		{args: []string{"--addr", "nope"}, key: "addr"},
		{env: map[string]string{"TANDEM_LOG_MAX_AGE": "soon"}, key: "TANDEM_LOG_MAX_AGE", msg: "invalid value"},
		{args: []string{"--log-replicas", "7"}, key: "log_replicas", msg: "1 to 5"},
		{env: map[string]string{"TANDEM_LOG_ACK_WAIT": "100ms"}, key: "log_ack_wait", msg: "at least 1s"},
		{args: []string{"--state", "mysql://x"}, key: "state"},
		{args: []string{"--config", "testdata/missing.yaml"}, key: "--config"},
		{args: []string{"extra"}, key: "flags"},
		{args: []string{"--config", "testdata/journey.bad.yaml"}, key: "journey.stages[1].department", msg: "must not be empty"},
		{args: []string{"--config", "testdata/identity.bad.yaml"}, key: "identity.types[2].priority", msg: "also the priority of crm_id"},
		{args: []string{"--config", "testdata/identity_limit.bad.yaml"}, key: "identity.types[1].limit", msg: "0 (no limit) or more"},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		var ue *UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%v %v: want a UsageError, got %v", tc.args, tc.env, err)
			continue
		}
		if ue.Key != tc.key || !strings.Contains(ue.Message, tc.msg) {
			t.Errorf("%v %v: got %q, want key %q with %q", tc.args, tc.env, ue.Error(), tc.key, tc.msg)
		}
	}
}

func TestJourneyConfig(t *testing.T) {
	c, err := Load([]string{"--config", "testdata/good.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Journey.Stages) != 6 || c.Journey.Stages[2].Department != "sales" {
		t.Errorf("default lifecycle: %+v", c.Journey.Stages)
	}
	c, err = Load([]string{"--config", "testdata/journey.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Journey.Stages) != 2 || c.Journey.Stages[1].Events[0] != "Contract Signed" {
		t.Errorf("configured lifecycle: %+v", c.Journey.Stages)
	}
}
