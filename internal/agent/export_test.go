package agent

import "io"

// SetOpenFile makes the walker open regular files with f until the returned
// function is called. Tests that use it must not run backups in parallel.
func SetOpenFile(f func(path string) (io.ReadCloser, error)) (reset func()) {
	old := openFile
	openFile = f
	return func() { openFile = old }
}
