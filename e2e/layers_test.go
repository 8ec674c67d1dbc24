package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMENamesEveryPackageInLayers: the README's package table names
// every package of the module (a package is named by its own row or by
// the row of a package it sits under), and lists them from the bottom up:
// no package imports one whose row comes later. A new package, or a new
// import that turns the layers upside down, fails here.
func TestREADMENamesEveryPackageInLayers(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	order := map[string]int{}
	for i, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9/]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		if _, ok := order[m[1]]; !ok {
			order[m[1]] = i
		}
	}
	// row is the table row a package falls under: its own, else the
	// nearest listed package it sits under.
	row := func(pkg string) (string, bool) {
		p := strings.TrimPrefix(pkg, "tandem/")
		for {
			if _, ok := order[p]; ok {
				return p, true
			}
			i := strings.LastIndex(p, "/")
			if i < 0 {
				return "", false
			}
			p = p[:i]
		}
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		a, ok := row(f[0])
		if !ok {
			t.Errorf("README's package table has no row for %s", f[0])
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, "tandem/") {
				continue
			}
			if b, ok := row(imp); ok && b != a && order[b] > order[a] {
				t.Errorf("%s imports %s, whose README row (%s) comes after its own (%s)", f[0], imp, b, a)
			}
		}
	}
}
