//go:build !linux && !freebsd

package agent

// willNeed does nothing where posix_fadvise is not available: the files of
// a batch are then read one after another.
func (f *sourceFile) willNeed(int64) {}
