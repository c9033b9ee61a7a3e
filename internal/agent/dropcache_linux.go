//go:build linux

package agent

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noCachestat is set once cachestat(2) has failed (Linux before 6.5, or a
// seccomp filter that refuses it): the backup then leaves the page cache
// alone, as it did before it could tell.
var noCachestat atomic.Bool

// uncached reports whether none of the open file's pages are in the page
// cache, so that every page the backup reads is one it brought in. It
// reports false when it cannot tell.
func uncached(fd int) bool {
	if noCachestat.Load() {
		return false
	}
	var st unix.Cachestat_t
	err := unix.Cachestat(uint(fd), &unix.CachestatRange{}, &st, 0)
	for err == unix.EINTR {
		err = unix.Cachestat(uint(fd), &unix.CachestatRange{}, &st, 0)
	}
	if err != nil {
		noCachestat.Store(true)
		return false
	}
	return st.Cache == 0
}

// dropPages tells the kernel that bytes [off, off+n) of the file, or from
// off to its end if n is 0, will not be read again (posix_fadvise
// DONTNEED): clean pages not mapped by anyone are freed now. A hint: a
// failure changes nothing but the memory.
func dropPages(fd int, off, n int64) {
	_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}
