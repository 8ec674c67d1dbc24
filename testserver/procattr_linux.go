package testserver

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the child if the test process dies
// (for example on a -timeout panic) before t.Cleanup could.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
