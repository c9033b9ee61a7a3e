//go:build !linux

package fs

import "sync/atomic"

var directWrites atomic.Int64

// writeDirect reports false: O_DIRECT is used on Linux only.
func writeDirect(tempFile, []byte) (bool, error) { return false, nil }
