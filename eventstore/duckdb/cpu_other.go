//go:build !unix

package duckdb

import (
	"errors"
	"time"
)

// processCPU is unknown here: queries then get their most threads.
func processCPU() (time.Duration, error) {
	return 0, errors.New("eventstore/duckdb: no process CPU time on this system")
}
