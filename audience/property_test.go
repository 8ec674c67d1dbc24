package audience

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestPropertySameAsDecoded checks that property (which scans the event
// for the property) finds what decoding the event's JSON finds
// (propertyDecoded), on hand-picked events (duplicate keys, keys in
// other cases, escaped and non-ASCII keys, null, non-objects on the
// path, space everywhere) and on generated ones.
func TestPropertySameAsDecoded(t *testing.T) {
	events := []string{
		`{"type":"track","properties":{"plan":"pro","total":12.50}}`,
		`{"properties":{"plan":"pro"},"properties":{"plan":"basic"}}`,
		`{"Properties":{"plan":"upper"},"properties":{"plan":"lower"}}`,
		`{"properties":{"plan":"lower"},"PROPERTIES":{"plan":"upper"}}`,
		`{"propertieſ":{"plan":"long s"}}`,
		`{"propert\u0069es":{"plan":"escaped"}}`,
		`{"properties":{"pl\u0061n":"escaped key"}}`,
		`{"properties":{"plan":"a","plan":"b"}}`,
		`{"properties":{"Plan":"case"}}`,
		`{"properties":null}`,
		`{"properties":"text"}`,
		`{"properties":[1,2]}`,
		`{"properties":{"plan":null}}`,
		`{"properties":{"item":{"color":"red","size":{"w":1}}}}`,
		`{"properties":{"item":null}}`,
		`{"properties":{"item":"flat"}}`,
		`{"properties":{"item":[{"color":"red"}]}}`,
		` { "properties" : { "item" : { "color" : "gr\"ey" } , "plan" : [ "x" , { "y" : "}" } ] } } `,
		`{"context":{"properties":{"plan":"nested"}},"properties":{}}`,
		`{"properties":{"plan":"\u00e9t\u00e9","total":1e2,"t2":-0.0,"big":12345678901234567890}}`,
		`{"properties":{"plan":{"b":2,"a":1,"html":"<&>"}}}`,
		`{"properties":{"plän":"non-ascii key","plan":"ok"}}`,
		`{}`,
		`[]`,
		`"properties"`,
	}
	paths := []string{"plan", "total", "t2", "big", "item", "item.color", "item.size", "item.size.w", "item.color.x", "Plan", "pl\u00e4n", "missing", "html"}
	rng := rand.New(rand.NewPCG(4, 15))
	for range 3000 {
		events = append(events, genRaw(rng, 0))
	}
	found, scanned := 0, 0
	for _, raw := range events {
		for _, path := range paths {
			if _, ok := findProperty([]byte(raw), path); ok {
				scanned++
			}
			want := propertyDecoded([]byte(raw), path)
			got := property([]byte(raw), path)
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Fatalf("property(%s, %q) = %s, decoding finds %s", raw, path, got, want)
			}
			if want != nil {
				found++
			}
		}
	}
	if found < 400 {
		t.Fatalf("only %d properties found: the events test too little", found)
	}
	// The scan, not the decoding it falls back on, answers what it can
	// (the generated keys with escapes send many to the decoding).
	if _, ok := findProperty([]byte(events[0]), "total"); !ok {
		t.Fatalf("the scan declined %s", events[0])
	}
	if total := len(events) * len(paths); scanned < total/5 {
		t.Fatalf("the scan answered %d of %d lookups", scanned, total)
	}
}

// genRaw is a random JSON object shaped like an event's, with a few keys
// that repeat, vary in case or carry escapes.
func genRaw(rng *rand.Rand, depth int) string {
	keys := []string{"properties", "Properties", "plan", "item", "color", "total", "size", "w", "context", `pl\u0061n`, "PROPERTIES"}
	var b strings.Builder
	b.WriteString("{")
	n := rng.IntN(5)
	if depth == 0 {
		n++
	}
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		if rng.IntN(4) == 0 {
			b.WriteString(" ")
		}
		k := keys[rng.IntN(len(keys))]
		if depth == 0 && i == 0 {
			k = "properties"
		}
		fmt.Fprintf(&b, `"%s":`, k) // as written: `pl\u0061n` is an escape
		switch r := rng.IntN(9); {
		case r < 3 && depth < 3:
			b.WriteString(genRaw(rng, depth+1))
		case r == 3:
			b.WriteString("null")
		case r == 4:
			fmt.Fprintf(&b, "%d.%d", rng.IntN(100), rng.IntN(100))
		case r == 5:
			b.WriteString(`[1,"]",{"a":null}]`)
		case r == 6:
			b.WriteString(`"with \"quote\" and \\ }"`)
		default:
			fmt.Fprintf(&b, "%q", []string{"pro", "basic", "red"}[rng.IntN(3)])
		}
	}
	b.WriteString("}")
	return b.String()
}
