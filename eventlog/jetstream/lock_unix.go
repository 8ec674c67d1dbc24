//go:build unix

package jetstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive lock on dir, so that two servers (in this
// process or another) never share a store. The kernel drops it if the
// process dies.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "tandem-eventlog.lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("eventlog/jetstream: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("eventlog/jetstream: %s is in use by another log", dir)
		}
		return nil, fmt.Errorf("eventlog/jetstream: lock %s: %w", dir, err)
	}
	return f, nil
}
