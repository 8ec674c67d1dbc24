package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
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

	DocEndpointsBegin = "<!-- endpoints table: generated from api/openapi.json's x-permission by `go generate ./access`; do not edit -->"
	DocEndpointsEnd   = "<!-- end of endpoints table -->"
)

// permissionNote is said of a permission that no endpoint needs.
var permissionNote = map[Permission]string{
	ReadPII: "no endpoint of its own: without it, every answer shows e-mails, phones, names and contact traits masked (see [governance](governance.md#masking))",
}

// EndpointTable is the permission → endpoints table as Markdown, from the
// OpenAPI document's x-permission of each management operation.
func EndpointTable(openapi []byte) (string, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			Security   *[]any  `json:"security"`
			Permission *string `json:"x-permission"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		return "", fmt.Errorf("access: the OpenAPI document: %w", err)
	}
	by := map[Permission][]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !strings.HasPrefix(path, "/api/v1/") || (op.Security != nil && len(*op.Security) == 0) {
				continue
			}
			p := Permission("")
			if op.Permission != nil {
				p = Permission(*op.Permission)
			}
			by[p] = append(by[p], "`"+strings.ToUpper(method)+" "+strings.TrimPrefix(path, "/api/v1")+"`")
		}
	}
	var b strings.Builder
	b.WriteString("| permission | endpoints |\n| --- | --- |\n")
	row := func(name string, p Permission) {
		eps := by[p]
		delete(by, p)
		sort.Slice(eps, func(i, j int) bool {
			key := func(e string) string { return strings.TrimSuffix(e[strings.IndexByte(e, ' '):], "`") }
			pi, pj := key(eps[i]), key(eps[j])
			return pi < pj || (pi == pj && eps[i] < eps[j])
		})
		text := strings.Join(eps, ", ")
		if text == "" {
			text = permissionNote[p]
		}
		b.WriteString("| " + name + " | " + text + " |\n")
	}
	for _, p := range Permissions {
		row("`"+string(p)+"`", p)
	}
	row("any authenticated user", "")
	for p := range by {
		return "", fmt.Errorf("access: the OpenAPI document names the unknown permission %q", p)
	}
	return b.String(), nil
}

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

// ReplaceDocTables returns doc with the text between [DocBegin] and
// [DocEnd] replaced by [DocTable], and that between [DocEndpointsBegin]
// and [DocEndpointsEnd] by [EndpointTable] of openapi.
func ReplaceDocTables(doc string, openapi []byte) (string, error) {
	eps, err := EndpointTable(openapi)
	if err != nil {
		return "", err
	}
	doc, err = replace(doc, DocBegin, DocEnd, DocTable())
	if err != nil {
		return "", err
	}
	return replace(doc, DocEndpointsBegin, DocEndpointsEnd, eps)
}

func replace(doc, begin, end, table string) (string, error) {
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", errors.New("access: the document has no markers " + begin)
	}
	return doc[:i+len(begin)] + "\n" + table + doc[j:], nil
}
