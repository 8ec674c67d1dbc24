//go:build !linux

package bench

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

var errNoCPU = errors.New("bench: CPU accounting needs Linux")

func procCPU(pid int) (time.Duration, error) { return 0, errNoCPU }

func selfCPU() (time.Duration, error) { return 0, errNoCPU }

func dieWithParent(cmd *exec.Cmd) {}

func tempDirWarning(dir string) string { return "" }

func exitPeakRSSMiB(ps *os.ProcessState) float64 { return 0 }
