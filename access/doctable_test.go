package access_test

import (
	"os"
	"strings"
	"testing"

	"tandem/access"
	"tandem/api"
)

// The docs' permission table is the one in roles.go: regenerate with
// `go generate ./access` when this fails.
func TestDocsTable(t *testing.T) {
	b, err := os.ReadFile("../docs/management.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := access.ReplaceDocTables(string(b), api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if want != string(b) {
		t.Errorf("docs/management.md's roles or endpoints table is stale: run go generate ./access")
	}
	for _, r := range access.Roles {
		if !strings.Contains(access.DocTable(), "| `"+string(r)+"` |") {
			t.Errorf("role %s missing from the table", r)
		}
	}
	if !access.Can(access.RolePrivacy, access.ReadPII) || access.Can(access.RoleAnalyst, access.ReadPII) || access.Can(access.RoleMarketing, access.ReadPII) {
		t.Errorf("pii:read: privacy sees personal data, analyst and marketing do not")
	}
}
