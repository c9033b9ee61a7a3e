package sample

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Compare walks want and got and returns an error naming the first
// difference: a missing or extra entry, a different type, mode, modification
// time, owner, symlink target or content. Directory mtimes are compared too.
func Compare(want, got string) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		q := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(q)
		if err != nil {
			return fmt.Errorf("%s: missing from restore: %w", rel, err)
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			return fmt.Errorf("%s: type %v, restored %v", rel, wi.Mode().Type(), gi.Mode().Type())
		}
		if wi.Mode()&fs.ModeSymlink == 0 && wi.Mode() != gi.Mode() {
			return fmt.Errorf("%s: mode %v, restored %v", rel, wi.Mode(), gi.Mode())
		}
		if !wi.ModTime().Equal(gi.ModTime()) {
			return fmt.Errorf("%s: mtime %v, restored %v", rel, wi.ModTime(), gi.ModTime())
		}
		ws, ok1 := wi.Sys().(*syscall.Stat_t)
		gs, ok2 := gi.Sys().(*syscall.Stat_t)
		if ok1 && ok2 && os.Geteuid() == 0 && (ws.Uid != gs.Uid || ws.Gid != gs.Gid) {
			return fmt.Errorf("%s: owner %d:%d, restored %d:%d", rel, ws.Uid, ws.Gid, gs.Uid, gs.Gid)
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wt, _ := os.Readlink(p)
			gt, _ := os.Readlink(q)
			if wt != gt {
				return fmt.Errorf("%s: symlink to %q, restored to %q", rel, wt, gt)
			}
		case wi.Mode().IsRegular():
			wb, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			gb, err := os.ReadFile(q)
			if err != nil {
				return err
			}
			if !bytes.Equal(wb, gb) {
				return fmt.Errorf("%s: content differs (%d bytes, restored %d)", rel, len(wb), len(gb))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			return fmt.Errorf("%s: restored but not in the source", rel)
		}
		return nil
	})
}
