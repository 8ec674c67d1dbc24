package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestServeConfigErrors checks that a bad value exits 2 before anything
// starts, with one line naming where the value was written.
func TestServeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--log-max-bytes", "10 GB"},
			want: `tandem serve: --log-max-bytes: "10 GB" is not a size (want bytes or a number and a unit: 512MiB, 10GB, 1.5GiB)` + "\n"},
		{env: map[string]string{"TANDEM_SOURCE_BURST": "5 000"},
			want: `tandem serve: TANDEM_SOURCE_BURST: "5 000" is not a whole number` + "\n"},
		{env: map[string]string{"TANDEM_CONFIG": "../../config/testdata/unknown_key.bad.yaml"},
			want: `tandem serve: ../../config/testdata/unknown_key.bad.yaml:2: unknown key "log_synk"` + "\n"},
		{args: []string{"--data-dir", t.TempDir(), "--max-inflight=0"},
			want: "tandem serve: --max-inflight: 0: must be at least 1\n"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"serve"}, tc.args...), &stdout, &stderr)
		if code != 2 || stderr.String() != tc.want {
			t.Errorf("tandem serve %s %v: exit %d, stderr %q; want exit 2, %q", strings.Join(tc.args, " "), tc.env, code, stderr.String(), tc.want)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
}

func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("tandem serve --help: exit %d", code)
	}
	for _, want := range []string{"--log-max-bytes SIZE", "TANDEM_LOG_MAX_BYTES", "--public-url URL", "--trusted-proxies CIDR,…", "--max-inflight N", "--log-queue-bytes SIZE"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("tandem serve --help does not show %q", want)
		}
	}
}
