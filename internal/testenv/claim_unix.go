//go:build unix

package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// claimPort takes an exclusive lock on a file named after port in a
// directory shared by every test process of this machine's user, and keeps
// it until the process exits (the kernel releases it then, however the
// process ends). It reports false if another process holds it. Where the
// lock cannot be taken at all (no writable temporary directory), it
// reports true: the in-process registry and the listen check still apply.
func claimPort(port int) bool {
	dir := filepath.Join(os.TempDir(), "embassy-test-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	claimed = append(claimed, f) // held open, and locked, until exit
	return true
}

// claimed keeps the claimed ports' lock files open (FreeAddr's freeMu).
var claimed []*os.File
