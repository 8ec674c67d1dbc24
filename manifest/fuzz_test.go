package manifest

import (
	"strings"
	"testing"
)

// FuzzParse: Parse never panics on any input, and a manifest it accepts
// survives the round trip apply and export depend on: held by a node as
// declared, exported, and parsed again, it plans no change.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("sources: []\nusers:\n  - {name: a, role: it}\n"))
	f.Add([]byte("identity:\n  types: [{name: user_id}, {name: anonymous_id}]\n  blocked: [x]\njourney:\n  stages: [{name: a, department: b, events: [E]}]\n"))
	f.Add([]byte("destinations:\n  - {name: d, type: segment, owner: it, config: {url: 'https://x.example', writeKey: '(set)'}}\n"))
	f.Add([]byte("sources: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("f.yaml", data)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		st := NewState()
		for i, r := range m.Resources {
			item := deepCopy(r.Fields).(map[string]any)
			item["id"] = "id" + strings.Repeat("x", i)
			if r.Kind == TrackingPlans {
				item["sourceId"], item["sourceName"] = item["id"], r.Name
			}
			st.Add(r.Kind, []map[string]any{item})
		}
		literal := func(name string) (string, bool) { return "${" + name + "}", true }
		if _, err := Diff(m, st, Options{Getenv: literal}); err != nil {
			return // e.g. a tracking plan of a source the file does not declare
		}
		out, err := Export(st)
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		m2, err := Parse("exported.yaml", out)
		if err != nil {
			t.Fatalf("the export does not parse: %v\n%s", err, out)
		}
		plan, err := Diff(m2, st, Options{Getenv: literal, Prune: true})
		if err != nil {
			t.Fatalf("diff of the export: %v\n%s", err, out)
		}
		for _, op := range plan.Ops {
			t.Errorf("the export plans a change: %s\n%s", strings.Join(op.Describe(), "\n"), out)
		}
	})
}
