package event

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestScanStringEveryPosition puts each byte the word-wide string scan
// must stop at (a quote, a backslash starting an escape, a control
// character, a byte above 0x7f) at every position of the first words of
// a string, after and before plain bytes, and checks the scan against
// encoding/json: a stop read from the wrong byte of a word shows as a
// string ended early or a control character let through.
func TestScanStringEveryPosition(t *testing.T) {
	specials := []string{`"`, `\"`, `\\`, `\n`, `\u00e9`, "\x01", "\x1f", "\t", "é", "\x7f", " ", `\x`, `\u12`}
	for _, sp := range specials {
		for pre := 0; pre <= 17; pre++ {
			for post := 0; post <= 9; post++ {
				s := `"` + strings.Repeat("a", pre) + sp + strings.Repeat("b", post) + `"`
				for _, doc := range []string{s, `{"k":` + s + `}`, `[` + s + `,1]`} {
					if got, want := validDocument([]byte(doc)), json.Valid([]byte(doc)); got != want {
						t.Fatalf("validDocument(%q) = %v, encoding/json says %v", doc, got, want)
					}
				}
				end, err := scanString([]byte(s), 0)
				if json.Valid([]byte(s)) && (err != nil || end != len(s)) {
					t.Fatalf("scanString(%q) = %d, %v; want %d", s, end, err, len(s))
				}
			}
		}
	}
}
