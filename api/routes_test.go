package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Every endpoint the API serves is in the OpenAPI document with the
// permission it needs (x-permission), and every management operation the
// document names is served: the role × endpoint test walks the document,
// so no endpoint can be left out of it.
func TestRoutesInOpenAPI(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Security   *[]any          `json:"security"`
			Permission json.RawMessage `json:"x-permission"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	routes := New(Options{}).Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is not in api/openapi.json", rt)
			continue
		}
		if op.Permission == nil {
			t.Errorf("%s has no x-permission in api/openapi.json (null for any authenticated user)", rt)
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !strings.HasPrefix(path, "/api/v1/") || (op.Security != nil && len(*op.Security) == 0) {
				continue
			}
			if !slices.Contains(routes, strings.ToUpper(method)+" "+path) {
				t.Errorf("api/openapi.json has %s %s, which the API does not serve", method, path)
			}
		}
	}
}
