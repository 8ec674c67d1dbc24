package access

import (
	"errors"
	"strings"
)

// roleFor says what each role is for, the second column of [DocTable].
var roleFor = map[Role]string{
	RoleAdmin:     "everything",
	RoleIT:        "runs the platform",
	RoleMarketing: "campaigns, journeys",
	RoleAnalyst:   "analysis",
	RolePrivacy:   "data protection",
	RoleService:   "customer service, machine accounts",
	RoleSales:     "sales",
}

// The markers around the generated table in docs/management.md.
const (
	DocBegin = "<!-- roles table: generated from access/roles.go by `go generate ./access`; do not edit -->"
	DocEnd   = "<!-- end of roles table -->"
)

// DocTable is the role × permission table ([Can]) as Markdown: a row per
// role, a column per permission, "yes" or "-".
func DocTable() string {
	var b strings.Builder
	b.WriteString("| role | for |")
	for _, p := range Permissions {
		b.WriteString(" `" + string(p) + "` |")
	}
	b.WriteString("\n| --- | --- |")
	for range Permissions {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, r := range Roles {
		b.WriteString("| `" + string(r) + "` | " + roleFor[r] + " |")
		for _, p := range Permissions {
			if Can(r, p) {
				b.WriteString(" yes |")
			} else {
				b.WriteString(" - |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ReplaceDocTable returns doc with the text between [DocBegin] and
// [DocEnd] replaced by [DocTable].
func ReplaceDocTable(doc string) (string, error) {
	i := strings.Index(doc, DocBegin)
	j := strings.Index(doc, DocEnd)
	if i < 0 || j < i {
		return "", errors.New("access: the document has no roles table markers")
	}
	return doc[:i+len(DocBegin)] + "\n" + DocTable() + doc[j:], nil
}
