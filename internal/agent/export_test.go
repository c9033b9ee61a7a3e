package agent

import (
	"io"
	"os"
)

// SetOpenFile makes the walker open regular files with f until the returned
// function is called. Tests that use it must not run backups in parallel.
func SetOpenFile(f func(path string) (io.ReadCloser, error)) (reset func()) {
	old := openFile
	openFile = f
	return func() { openFile = old }
}

// SetReadDir makes the walkers list directories with f until the returned
// function is called. Tests that use it must not run backups in parallel.
func SetReadDir(f func(path string) ([]os.DirEntry, error)) (reset func()) {
	old := readDir
	readDir = f
	return func() { readDir = old }
}
