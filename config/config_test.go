package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"tandem/access"
	"tandem/attribution"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.err from the errors Load gives")

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestBad loads every bad input in testdata and compares the error with
// the input's .err file: X.bad.yaml is given with --config, X.bad.env holds
// NAME=value lines (the value verbatim, to the end of the line) and
// X.bad.args one command line argument per line.
func TestBad(t *testing.T) {
	var files []string
	for _, pattern := range []string{"testdata/*.bad.yaml", "testdata/*.bad.env", "testdata/*.bad.args"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	if len(files) < 40 {
		t.Fatalf("only %d bad inputs in testdata", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var args []string
			vars := map[string]string{}
			switch filepath.Ext(file) {
			case ".yaml":
				args = []string{"--config", file}
			case ".env":
				for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
					name, value, ok := strings.Cut(line, "=")
					if !ok {
						t.Fatalf("%s: %q is not NAME=value", file, line)
					}
					vars[name] = value
				}
			case ".args":
				args = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			}
			_, err = Load(args, env(vars), io.Discard)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("want a *UsageError, got %v", err)
			}
			golden := strings.TrimSuffix(file, filepath.Ext(file)) + filepath.Ext(file) + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test -update to write it)", rerr)
			}
			if got := err.Error() + "\n"; got != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// flagSamples are, for every flag, a value that parses, passes Validate and
// differs from the default, in the syntax a variable or a file would use.
var flagSamples = map[string]string{
	"data-dir":            "/srv/tandem",
	"addr":                "0.0.0.0:9090",
	"log":                 "nats://10.0.0.1:4222,10.0.0.2:4222",
	"state":               "postgres://tandem@db/tandem",
	"events":              "clickhouse://ch:9000/tandem",
	"log-sync":            "always", // the default, and the only value allowed
	"log-max-bytes":       "1.5GiB",
	"log-max-age":         "48h",
	"log-replicas":        "3",
	"log-ack-wait":        "45s",
	"log-queue-bytes":     "64MB",
	"events-memory-limit": "1GiB",
	"max-inflight":        "100",
	"max-pipeline-lag":    "2m",
	"replay-last":         "90m",
	"source-rate-limit":   "2.5",
	"source-burst":        "50",
	"public-url":          "https://cdp.example.com/tandem",
	"trusted-proxies":     "10.0.0.0/8,192.0.2.7",
	"destination-allow":   "127.0.0.0/8",
	"pipeline":            "false",
	"shutdown-timeout":    "5s",
	"log-level":           "debug",
}

// TestEveryFlagFromEverySource sets each flag in turn by the flag, by its
// variable and by its file key, and wants the same configuration from all
// three: a flag added without a sample here fails.
func TestEveryFlagFromEverySource(t *testing.T) {
	def := Default()
	def.flagSet().VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return // names the file: a variable, but not a file key
		}
		val, ok := flagSamples[f.Name]
		if !ok {
			t.Errorf("--%s has no sample value in flagSamples", f.Name)
			return
		}
		byFlag, err := Load([]string{"--" + f.Name + "=" + val}, env(nil), io.Discard)
		if err != nil {
			t.Errorf("--%s %s: %v", f.Name, val, err)
			return
		}
		if reflect.DeepEqual(byFlag, def) && f.Name != "log-sync" {
			t.Errorf("--%s %s changed nothing", f.Name, val)
		}
		byEnv, err := Load(nil, env(map[string]string{envVar(f.Name): val}), io.Discard)
		if err != nil {
			t.Errorf("%s=%s: %v", envVar(f.Name), val, err)
		} else if !reflect.DeepEqual(byEnv, byFlag) {
			t.Errorf("%s=%s gives\n%+v\n--%s gives\n%+v", envVar(f.Name), val, byEnv, f.Name, byFlag)
		}
		file := filepath.Join(t.TempDir(), "tandem.yaml")
		if err := os.WriteFile(file, []byte(fileKey(f.Name)+": "+val+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		byFile, err := Load([]string{"--config", file}, env(nil), io.Discard)
		byFile.File = ""
		if err != nil {
			t.Errorf("%s: %s: %v", fileKey(f.Name), val, err)
		} else if !reflect.DeepEqual(byFile, byFlag) {
			t.Errorf("file key %s: %s gives\n%+v\n--%s gives\n%+v", fileKey(f.Name), val, byFile, f.Name, byFlag)
		}
	})
}

func TestPrecedence(t *testing.T) {
	// good.yaml sets data_dir, addr, log_max_age and destination_allow.
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
	if c.LogMaxAge != 48*time.Hour || !reflect.DeepEqual(c.DestinationAllow, []string{"127.0.0.0/8"}) {
		t.Errorf("file values lost: %+v", c)
	}
	if c.LogAckWait != 30*time.Second || c.SourceBurst != 200000 {
		t.Errorf("defaults lost: %+v", c)
	}
	// The file may also be named by TANDEM_CONFIG.
	c, err = Load(nil, env(map[string]string{"TANDEM_CONFIG": "testdata/good.yaml"}), io.Discard)
	if err != nil || c.Addr != "0.0.0.0:9090" || c.File != "testdata/good.yaml" {
		t.Errorf("TANDEM_CONFIG: %v, addr %s, file %q", err, c.Addr, c.File)
	}
	// A list flag replaces the file's list rather than adding to it.
	c, err = Load([]string{"--config", "testdata/good.yaml", "--destination-allow", "10.0.0.0/8, 192.168.0.0/16"}, env(nil), io.Discard)
	if err != nil || !reflect.DeepEqual(c.DestinationAllow, []string{"10.0.0.0/8", "192.168.0.0/16"}) {
		t.Errorf("--destination-allow over the file: %v %q", err, c.DestinationAllow)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if err := d.Validate(); err != nil { // Validate fills in identity priorities
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, d) {
		t.Errorf("Load with nothing set:\n%+v\nwant the defaults:\n%+v", c, d)
	}
	if c.DataDir != "./tandem-data" || c.Addr != "127.0.0.1:8080" || c.LogSync != "always" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		text string // formatSize(want)
	}{
		{"0", 0, "0"},
		{"1048576", 1 << 20, "1MiB"},
		{"10GB", 10_000_000_000, "10GB"},
		{"10gb", 10_000_000_000, "10GB"},
		{"512MiB", 512 << 20, "512MiB"},
		{"1.5GiB", 3 << 29, "1536MiB"},
		{"1.5kB", 1500, "1500"},
		{"2TiB", 2 << 40, "2TiB"},
		{"64KB", 64000, "64kB"},
		{"1000B", 1000, "1kB"},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if text := formatSize(tc.want); text != tc.text {
			t.Errorf("formatSize(%d) = %q, want %q", tc.want, text, tc.text)
		}
		if back, err := parseSize(formatSize(tc.want)); err != nil || back != tc.want {
			t.Errorf("parseSize(formatSize(%d)) = %d, %v", tc.want, back, err)
		}
	}
	for _, in := range []string{"", "10 GB", "-1", "1.5B", "0.1", "10G", "10Gbit", "1e9", "0x10", "9223372036854775808", "10000000TiB", "1.GB", ".5GB"} {
		if n, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestTrustedProxiesAndPublicURL(t *testing.T) {
	c, err := Load([]string{"--trusted-proxies", "10.0.0.0/8,192.0.2.7,2001:db8::1,fd00::/8", "--public-url", "https://cdp.example.com:8443/tandem/"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var bits []int
	for _, p := range c.TrustedProxies {
		prefix, err := ParsePrefix(p)
		if err != nil {
			t.Fatalf("ParsePrefix(%q): %v", p, err)
		}
		bits = append(bits, prefix.Bits())
	}
	if !reflect.DeepEqual(bits, []int{8, 32, 128, 8}) {
		t.Errorf("prefix lengths %v, want [8 32 128 8] (a bare IP is the address alone)", bits)
	}
	for _, u := range []string{"", "http://localhost:8080", "https://cdp.example.com"} {
		if msg := checkPublicURL(u); msg != "" {
			t.Errorf("public URL %q: %s", u, msg)
		}
	}
	for _, u := range []string{"cdp.example.com", "/tandem", "https://", "https://cdp.example.com#top", "https://cdp.example.com/?", "https://u:p@cdp.example.com", "mailto:a@example.com", "ws://cdp.example.com"} {
		if msg := checkPublicURL(u); msg == "" {
			t.Errorf("public URL %q accepted", u)
		}
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := Load([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v, want ErrHelp", err)
	}
	help := out.String()
	c := Default()
	c.flagSet().VisitAll(func(f *flag.Flag) {
		for _, want := range []string{"--" + f.Name, envVar(f.Name)} {
			if !strings.Contains(help, want) {
				t.Errorf("--help does not mention %s", want)
			}
		}
	})
	for _, want := range []string{
		"--log-max-bytes SIZE\n",
		"(TANDEM_LOG_MAX_AGE, file key log_max_age, default 168h)",
		"(TANDEM_LOG_QUEUE_BYTES, file key log_queue_bytes, default 256MiB)",
		"(TANDEM_DATA_DIR, file key data_dir, default ./tandem-data)",
		"--trusted-proxies CIDR,…\n",
		"(TANDEM_CONFIG)",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q:\n%s", want, help)
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if len(line) > 80 {
			t.Errorf("--help line longer than 80 characters: %q", line)
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

func TestConsentConfig(t *testing.T) {
	c, err := Load([]string{"--config", "testdata/good.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Consent.Defaults) != 0 || !slices.Equal(c.Consent.GPCPurposes, []string{"Advertising", "DataSharing"}) {
		t.Errorf("default consent: %+v", c.Consent)
	}
	c, err = Load([]string{"--config", "testdata/consent.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(c.Consent.Defaults, map[string]bool{"Analytics": true, "Advertising": false}) || !slices.Equal(c.Consent.GPCPurposes, []string{"Advertising"}) {
		t.Errorf("configured consent: %+v", c.Consent)
	}
}

func TestPolicyConfig(t *testing.T) {
	c, err := Load([]string{"--config", "testdata/good.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Preset != "it-led" || !c.Policy.AdminApprovesAll || len(c.Policy.Categories["sensitive"]) != 2 {
		t.Errorf("default policy: %+v", c.Policy)
	}
	c, err = Load([]string{"--config", "testdata/policy.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Policy
	if p.Preset != "joint" || p.AdminApprovesAll || !slices.Equal(p.Rules["retention"].Approve, []access.Role{access.RoleIT}) ||
		p.Rules["retention"].Propose != nil || len(p.Categories["contact"]) != 0 ||
		!slices.Equal(p.Categories["health"], []access.Role{access.RolePrivacy}) || len(p.Categories["sensitive"]) != 2 {
		t.Errorf("configured policy: %+v", p)
	}
}

func TestRetentionAndPrivacyConfig(t *testing.T) {
	c, err := Load([]string{"--config", "testdata/retention.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Retention
	if r.Default != 8760*time.Hour || r.Sources["shop web"] != 720*time.Hour || r.Categories["contact"] != 2160*time.Hour ||
		r.ConsentHistory != 26280*time.Hour || r.Every != 30*time.Minute {
		t.Errorf("retention: %+v", r)
	}
	if c.Privacy.Categories["properties.card_last4"] != "payment" || len(c.Privacy.Subjects) != 2 {
		t.Errorf("privacy: %+v", c.Privacy)
	}
	c, err = Load([]string{"--config", "testdata/good.yaml"}, env(nil), io.Discard)
	if err != nil || c.Retention.Enabled() {
		t.Errorf("no retention key: %+v, %v", c.Retention, err)
	}
}

func TestAttributionConfig(t *testing.T) {
	c, err := Load([]string{"--config", "testdata/good.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Attribution.HalfLife != 7*24*time.Hour || c.Attribution.Conversion.Event != "Order Completed" || len(c.Attribution.Channels) != 0 {
		t.Errorf("default attribution: %+v", c.Attribution)
	}
	c, err = Load([]string{"--config", "testdata/attribution.yaml"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Attribution
	if len(a.Channels) != 2 || a.Channels[0].Source[1] != "podigee" || a.Channels[1].Referrer[0] != "partner.example" ||
		len(a.Tools) != 1 || a.Tools[0].Tool != "mailer" || a.HalfLife != 72*time.Hour || a.Lookback != 30*24*time.Hour ||
		a.Conversion != (attribution.Conversion{Event: "Purchase", Value: "amount"}) {
		t.Errorf("configured attribution: %+v", a)
	}
}
