package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill the child if the test process dies
// (for example on a -timeout panic) before t.Cleanup could.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
