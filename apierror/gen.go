//go:build ignore

// gen writes the files made from errors.json (see package errtable); run it
// with `go generate ./apierror` from anywhere in the module.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"tandem/apierror/internal/errtable"
)

func main() {
	// go generate runs this in the apierror directory.
	root := ".."
	files, err := errtable.Files(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apierror gen:", err)
		os.Exit(1)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if old, err := os.ReadFile(filepath.Join(root, p)); err == nil && string(old) == string(files[p]) {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, p), files[p], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "apierror gen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", p)
	}
}
