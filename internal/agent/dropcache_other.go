//go:build !linux

package agent

// uncached reports false where cachestat(2) does not exist: without knowing
// which pages were cached before, the backup leaves the page cache alone.
func uncached(int, uint32) bool { return false }

func dropPages(int, int64, int64) {}

func dropOK(int) bool { return false }

func dropOKPath(string) bool { return false }
