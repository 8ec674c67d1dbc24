//go:build !unix

package server

import (
	"fmt"
	"os"
	"path/filepath"
)

const lockFile = "tandem.lock"

// lockDataDir only opens the lock file: this platform has no flock, so
// nothing stops two nodes from sharing a data directory.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return f, nil
}
