package websdk

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSegmentSettingsAPIHost(t *testing.T) {
	for base, want := range map[string][2]string{
		"http://127.0.0.1:8080":          {"127.0.0.1:8080/v1", "http"},
		"https://collect.example.com":    {"collect.example.com/v1", "https"},
		"https://example.com/tandem":     {"example.com/tandem/v1", "https"},
		"https://example.com/tandem/":    {"example.com/tandem/v1", "https"},
		"https://[2001:db8::1]:8443/cdp": {"[2001:db8::1]:8443/cdp/v1", "https"},
	} {
		b, err := SegmentSettings("wk_x", base)
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Integrations map[string]map[string]any `json:"integrations"`
			Metrics      map[string]any            `json:"metrics"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		seg := s.Integrations["Segment.io"]
		if seg["apiHost"] != want[0] || seg["protocol"] != want[1] || seg["apiKey"] != "wk_x" || len(s.Integrations) != 1 {
			t.Errorf("%s: %v", base, seg)
		}
		if s.Metrics["sampleRate"] != float64(0) {
			t.Errorf("%s: metrics %v", base, s.Metrics)
		}
	}
}

func TestBundlePrelude(t *testing.T) {
	b := string(Bundle(`https://x.example/"</script>`))
	first, rest, _ := strings.Cut(b, "\n")
	if strings.Contains(first, "</script>") || !strings.Contains(first, `\"`) {
		t.Errorf("base not escaped as a JS string: %s", first)
	}
	if strings.Contains(rest, "sourceMappingURL") || !strings.Contains(rest, "AnalyticsNext") {
		t.Errorf("bundle body unexpected (%d bytes)", len(rest))
	}
	if BundleETag("a") == BundleETag("b") {
		t.Error("ETag does not depend on the base")
	}
	if _, ok := Chunk("../websdk.go"); ok {
		t.Error("Chunk serves files outside the bundles")
	}
	if Version == "" || !strings.Contains(License, "MIT") {
		t.Errorf("version %q, licence %.40q", Version, License)
	}
}
