//go:build darwin || freebsd || netbsd || openbsd

package main

import (
	"io/fs"
	"syscall"
	"time"
)

// dieWithParent: these kernels have no parent-death signal; an interrupted
// runner still stops its host processes through exec.Cmd's Cancel.
func dieWithParent() *syscall.SysProcAttr { return nil }

func accessTime(fi fs.FileInfo) (time.Time, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(st.Atimespec.Sec, st.Atimespec.Nsec), true
}
