//go:build !unix

package jetstream

import (
	"fmt"
	"os"
)

// lockDir only makes dir: this platform has no flock, so nothing stops two
// logs from sharing it.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	return nil, nil
}
