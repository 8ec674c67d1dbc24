package privacy

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"
)

// TestMayCarryConsent: the one-pass check finds exactly what the two
// substring searches it replaces find, on JSON-like bytes built from the
// pieces that matter (the names whole and cut, quotes, other letters).
func TestMayCarryConsent(t *testing.T) {
	pieces := []string{`"gpc"`, `"categoryPreferences"`, `gpc`, `"gp`, `c"`, `"categoryPreferences`, `categoryPreferences"`,
		`"cate`, `gory`, `g`, `"`, `:`, `{"context":{`, `"page"`, `true`, `"GPC"`, ` `, `x`}
	rapid.Check(t, func(t *rapid.T) {
		var b []byte
		for _, i := range rapid.SliceOfN(rapid.IntRange(0, len(pieces)-1), 0, 12).Draw(t, "pieces") {
			b = append(b, pieces[i]...)
		}
		want := bytes.Contains(b, []byte(`"categoryPreferences"`)) || bytes.Contains(b, []byte(`"gpc"`))
		if got := mayCarryConsent(b); got != want {
			t.Fatalf("mayCarryConsent(%q) = %v, want %v", b, got, want)
		}
	})
}
