//go:build linux

package agent

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noCachestat is set once cachestat(2) is known not to work in this process
// (Linux before 6.5, or a seccomp filter that refuses it): the backup then
// leaves the page cache alone, as it did before it could tell.
var noCachestat atomic.Bool

// cachedPages reports how many pages of bytes [off, off+n) of the open file
// (to its end if n is 0), owned by uid, are in the page cache; ok is false
// when the kernel cannot say.
func cachedPages(fd int, off, n int64, uid uint32) (pages uint64, ok bool) {
	if noCachestat.Load() {
		return 0, false
	}
	r := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	var st unix.Cachestat_t
	err := unix.Cachestat(uint(fd), &r, &st, 0)
	for err == unix.EINTR {
		err = unix.Cachestat(uint(fd), &r, &st, 0)
	}
	switch {
	case err == nil:
		return st.Cache, true
	case err == unix.ENOSYS:
		noCachestat.Store(true)
	case err == unix.EPERM:
		// Kernels with the 2025 fix for cachestat's side channel refuse a
		// file the caller may not write, does not own and has no
		// CAP_FOWNER over: that file stays cached. Refused on its own
		// file, or to root, it is a seccomp filter refusing every call.
		if euid := os.Geteuid(); euid == 0 || uint32(euid) == uid {
			noCachestat.Store(true)
		}
	}
	return 0, false
}

// dropPages tells the kernel that bytes [off, off+n) of the file will not be
// read again (posix_fadvise DONTNEED): clean pages not mapped by anyone are
// freed now. n must not be 0 (which would mean to the end of the file). A
// hint: a failure changes nothing but the memory.
func dropPages(fd int, off, n int64) {
	_ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
}

// File systems that keep a regular file's pages in the file's own page
// cache, where cachestat counts them and DONTNEED drops them (statfs
// f_type; linux/magic.h).
const (
	ext4Magic  = 0xEF53 // also ext2 and ext3
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
	f2fsMagic  = 0xF2F52010
)

// dropOK reports whether the file system of the open file or directory fd
// keeps its files' pages where cachestat sees them, so that a backup may
// drop the pages it brought in. Any other file system is left alone: on
// an overlay the pages are the real file's and cachestat on the overlay
// file sees none, so a hot file would look cold; ZFS keeps its own cache;
// tmpfs's pages are the files.
func dropOK(fd int) bool {
	return dropOKStatfs(func(st *unix.Statfs_t) error { return unix.Fstatfs(fd, st) })
}

// dropOKPath is dropOK for a path.
func dropOKPath(path string) bool {
	return dropOKStatfs(func(st *unix.Statfs_t) error { return unix.Statfs(path, st) })
}

func dropOKStatfs(statfs func(*unix.Statfs_t) error) bool {
	var st unix.Statfs_t
	err := statfs(&st)
	for err == unix.EINTR {
		err = statfs(&st)
	}
	if err != nil {
		return false
	}
	switch int64(st.Type) {
	case ext4Magic, xfsMagic, btrfsMagic, f2fsMagic:
		return true
	}
	return false
}
