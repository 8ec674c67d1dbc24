//go:build !linux

package testserver

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's; t.Cleanup still stops the child.
func dieWithParent(*exec.Cmd) {}
