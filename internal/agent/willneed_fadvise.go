//go:build linux || freebsd

package agent

import "golang.org/x/sys/unix"

// willNeed tells the kernel that the first n bytes of f will be read soon,
// so that it starts reading them (posix_fadvise WILLNEED). It is a hint: a
// failure changes nothing but the speed.
func (f *sourceFile) willNeed(n int64) {
	_ = unix.Fadvise(f.fd, 0, n, unix.FADV_WILLNEED)
}
