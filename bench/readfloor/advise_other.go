//go:build !linux && !freebsd

package main

// willNeed does nothing where posix_fadvise is not available.
func willNeed(int, int64) {}

// dontNeed does nothing where posix_fadvise is not available.
func dontNeed(int, int64, int64) {}
