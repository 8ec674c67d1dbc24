package event

import "testing"

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.77":           "198.51.100.0",
		"10.1.2.3":                "10.1.2.0",
		"::ffff:192.0.2.9":        "192.0.2.0",
		"2001:db8:abcd:12:1::5":   "2001:db8:abcd::",
		"2001:db8:1:ffff::1%eth0": "2001:db8:1::",
		"fe80::1":                 "fe80::",
		" 203.0.113.200 ":         "203.0.113.0",
	} {
		if got, ok := TruncateIP(in); !ok || got != want {
			t.Errorf("TruncateIP(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "example.com", "1.2.3", "999.1.1.1"} {
		if got, ok := TruncateIP(bad); ok {
			t.Errorf("TruncateIP(%q) = %q, want not ok", bad, got)
		}
	}
}

func TestMinimiseEvent(t *testing.T) {
	raw := `{"type":"track","context":{"ip":"198.51.100.77","userAgent":"x"}}`
	for _, c := range []struct{ policy, in, want string }{
		{IPTruncate, raw, `{"type":"track","context":{"ip":"198.51.100.0","userAgent":"x"}}`},
		{"", raw, `{"type":"track","context":{"ip":"198.51.100.0","userAgent":"x"}}`},
		{IPDrop, raw, `{"type":"track","context":{"userAgent":"x"}}`},
		{IPKeep, raw, raw},
		{IPTruncate, `{"context":{"ip":"somewhere"}}`, `{"context":{}}`},
		{IPTruncate, `{"context":{"ip":12345}}`, `{"context":{}}`},
		{IPTruncate, `{"context":{"ip":"2001:db8:abcd:12::1"}}`, `{"context":{"ip":"2001:db8:abcd::"}}`},
	} {
		if got := string(MinimiseEvent([]byte(c.in), c.policy)); got != c.want {
			t.Errorf("%s %s: got %s, want %s", c.policy, c.in, got, c.want)
		}
	}
	if MinimiseIP("198.51.100.77", IPDrop) != "" || MinimiseIP("198.51.100.77", IPKeep) != "198.51.100.77" || MinimiseIP("198.51.100.77", "") != "198.51.100.0" {
		t.Error("MinimiseIP does not follow the policy")
	}
}
