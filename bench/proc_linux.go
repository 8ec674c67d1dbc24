package bench

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// procCPU returns the user+system CPU time pid has used so far, all its
// threads together, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

// selfCPU returns the user+system CPU time this process has used.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// dieWithParent makes the kernel kill the child if the bench process dies
// without cleaning up (SIGKILL, crash).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// tempDirWarning warns when dir is on a RAM file system, where fsync costs
// nothing and durable throughput would be overstated.
func tempDirWarning(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	const tmpfsMagic, ramfsMagic = 0x01021994, 0x858458f6
	if st.Type == tmpfsMagic || st.Type == ramfsMagic {
		return fmt.Sprintf("%s is a RAM file system: fsync is free there, so the figures overstate durable throughput; set TMPDIR to a directory on disk", dir)
	}
	return ""
}

// exitPeakRSSMiB returns the largest resident set of an exited child
// (its VmHWM at the end, whatever it did while stopping), in MiB.
func exitPeakRSSMiB(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}
