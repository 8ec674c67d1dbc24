package collect

import (
	"encoding/json"
	"net/http/httptest"
	"tandem/event"
	"testing"
)

// TestGPCContext: Sec-GPC: 1 adds gpc: true to the context the server
// gives a request's events; any other value, or none, adds nothing.
func TestGPCContext(t *testing.T) {
	h := New(Options{})
	for _, tc := range []struct {
		header string
		want   bool
	}{{"1", true}, {" 1 ", true}, {"", false}, {"0", false}, {"true", false}} {
		r := httptest.NewRequest("POST", "/v1/track", nil)
		r.RemoteAddr = ""
		if tc.header != "" {
			r.Header.Set("Sec-GPC", tc.header)
		}
		def := h.contextDefaults(r, event.IPKeep, true)
		var m map[string]any
		if def != nil {
			if err := json.Unmarshal(def, &m); err != nil {
				t.Fatalf("Sec-GPC %q: %q is not a JSON object: %v", tc.header, def, err)
			}
		}
		if got := m["gpc"] == true; got != tc.want {
			t.Errorf("Sec-GPC %q: context defaults %s, want gpc %v", tc.header, def, tc.want)
		}
	}
}
