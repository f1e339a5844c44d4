//go:build !linux

package testserver

import "os/exec"

// DieWithParent does nothing outside Linux.
func DieWithParent(cmd *exec.Cmd) {}
