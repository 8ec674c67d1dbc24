package policy_test

import (
	"os"
	"strings"
	"testing"

	"tandem/policy"
)

const (
	tableStart = "<!-- decision rights: the presets of package policy (policy.DocTable); TestDocTable checks it -->\n"
	tableEnd   = "<!-- end of decision rights -->"
)

// TestDocTable: the tables of docs/governance.md are the presets in force.
func TestDocTable(t *testing.T) {
	b, err := os.ReadFile("../docs/governance.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, tableStart), strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/governance.md has no decision-rights tables between %q and %q", tableStart, tableEnd)
	}
	if got, want := doc[i+len(tableStart):j], policy.DocTable(); got != want {
		t.Errorf("docs/governance.md's decision-rights tables are stale; they should read:\n%s", want)
	}
}
