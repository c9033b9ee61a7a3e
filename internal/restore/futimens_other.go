//go:build !linux

package restore

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// futimens sets the times of the open file fd through /dev/fd.
func futimens(fd int, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime), unix.NsecToTimespec(mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, "/dev/fd/"+strconv.Itoa(fd), ts, 0)
}
