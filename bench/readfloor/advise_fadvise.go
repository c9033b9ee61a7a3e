//go:build linux || freebsd

package main

import "golang.org/x/sys/unix"

// willNeed tells the kernel the first n bytes of fd will be read soon.
func willNeed(fd int, n int64) { _ = unix.Fadvise(fd, 0, n, unix.FADV_WILLNEED) }

// dontNeed drops fd's pages in [off, off+n) from the page cache (n 0: to
// the end).
func dontNeed(fd int, off, n int64) { _ = unix.Fadvise(fd, off, n, unix.FADV_DONTNEED) }
