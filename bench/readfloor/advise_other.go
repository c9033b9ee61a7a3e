//go:build !linux && !freebsd

package main

// willNeed does nothing where posix_fadvise is not available.
func willNeed(int, int64) {}
