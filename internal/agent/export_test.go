package agent

import (
	"io"
	"os"
)

// SetOpenFile makes the readers open regular files with f, by path, until
// the returned function is called (the walker then opens none itself). Tests that use it must not run backups in parallel.
func SetOpenFile(f func(path string) (io.ReadCloser, error)) (reset func()) {
	old, oldOn := openFile, openOnListing
	openFile, openOnListing = f, false
	return func() { openFile, openOnListing = old, oldOn }
}

// SetReadDir makes the walkers list the open directory d with f(d.Name(), d)
// until the returned function is called. Tests that use it must not run
// backups in parallel.
func SetReadDir(f func(path string, d *os.File) ([]os.DirEntry, error)) (reset func()) {
	old := readDir
	readDir = func(d *os.File) ([]os.DirEntry, error) { return f(d.Name(), d) }
	return func() { readDir = old }
}

// OpenRegular is how the walker opens a regular file.
var OpenRegular = openRegular

// DropBehindOf has f, opened by OpenRegular, drop its pages as it is read if
// none were cached.
func DropBehindOf(f io.Reader) { f.(*sourceFile).dropBehind() }
