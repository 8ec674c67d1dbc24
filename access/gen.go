//go:build ignore

// gen writes the role × permission table and the permission × endpoint
// table (from api/openapi.json) into docs/management.md; run it
// with `go generate ./access`.
package main

import (
	"fmt"
	"os"

	"tandem/access"
	"tandem/api"
)

func main() {
	const path = "../docs/management.md" // go generate runs in access/
	old, err := os.ReadFile(path)
	if err == nil {
		var doc string
		doc, err = access.ReplaceDocTables(string(old), api.OpenAPI())
		if err == nil && doc != string(old) {
			err = os.WriteFile(path, []byte(doc), 0o644)
			fmt.Println("wrote", path)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "access gen:", err)
		os.Exit(1)
	}
}
