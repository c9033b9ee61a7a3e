package fs

import (
	"os"
)

// fileOps are the mutating file-system calls of Put and Open. Tests replace
// them with a fake that fails chosen calls; reads go straight to os.
type fileOps interface {
	CreateTemp(dir, pattern string) (tempFile, error)
	Link(oldname, newname string) error
	Remove(name string) error
	Mkdir(name string, perm os.FileMode) error
	SyncDir(name string) error
}

type tempFile interface {
	Name() string
	Write(b []byte) (int, error)
	Chmod(mode os.FileMode) error
	Sync() error
	Close() error
}

type osOps struct{}

func (osOps) CreateTemp(dir, pattern string) (tempFile, error) { return os.CreateTemp(dir, pattern) }
func (osOps) Link(oldname, newname string) error               { return os.Link(oldname, newname) }
func (osOps) Remove(name string) error                         { return os.Remove(name) }
func (osOps) Mkdir(name string, perm os.FileMode) error        { return os.Mkdir(name, perm) }

// SyncDir fsyncs a directory so that entries created in it survive a crash.
func (osOps) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}
