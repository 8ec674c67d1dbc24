//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the file in the data directory a running node holds an
// exclusive flock on. The kernel drops the lock when the process exits,
// however it exits, so a stale file never blocks a start.
const lockFile = "tandem.lock"

// lockDataDir takes the data directory for this process, before anything
// in it is opened: two nodes sharing one directory would share its SQLite
// file, event store and log.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another tandem process (stop it, or give this one its own --data-dir)", dir)
		}
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, err)
	}
	return f, nil
}
