package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// resetCopy makes dst an exact copy of the pristine corpus src, always at
// the same path. The first time it is `cp -a`. Afterwards only what a run
// changed is redone — entries absent from src removed, regular files whose
// size, mtime or mode differ copied again, symlinks remade, directory modes
// and times reset — so a reset costs the edit's bytes rather than the whole
// corpus (at 1 GB, 465 000 files, a full copy and its write-back took about
// two minutes a run). Unchanged files keep their inodes between runs; every
// tool starts with a fresh repository and cache, so no tool gains by it.
func resetCopy(ctx context.Context, src, dst string) error {
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := runQuiet(ctx, "", nil, "cp", "-a", src, dst); err != nil {
			return fmt.Errorf("copy corpus: %w", err)
		}
		return nil
	} else if err != nil {
		return err
	}
	// Remove what src does not have (or has as another type).
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		si, err := os.Lstat(filepath.Join(src, rel))
		if err == nil && si.Mode().Type() == d.Type() {
			return nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset work copy: %w", err)
	}
	// Copy what differs; remember directories to reset their times last.
	var dirs []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		si, err := os.Lstat(p)
		if err != nil {
			return err
		}
		di, derr := os.Lstat(q)
		switch {
		case si.IsDir():
			if derr != nil {
				if err := os.Mkdir(q, si.Mode().Perm()); err != nil {
					return err
				}
			}
			dirs = append(dirs, rel)
		case si.Mode()&fs.ModeSymlink != 0:
			st, _ := os.Readlink(p)
			if dt, err := os.Readlink(q); err == nil && dt == st {
				return nil
			}
			_ = os.Remove(q)
			return os.Symlink(st, q) // the edit never touches symlinks; their own times are left as made
		case si.Mode().IsRegular():
			if derr == nil && di.Size() == si.Size() && di.ModTime().Equal(si.ModTime()) && di.Mode() == si.Mode() {
				return nil
			}
			return copyFile(p, q, si)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset work copy: %w", err)
	}
	slices.Reverse(dirs) // deepest first: setting a child's times leaves its parent's alone
	for _, rel := range dirs {
		si, err := os.Lstat(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		q := filepath.Join(dst, rel)
		if err := os.Chmod(q, si.Mode().Perm()|si.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		if err := os.Chtimes(q, atime(si), si.ModTime()); err != nil {
			return err
		}
	}
	return nil
}

// atime is fi's access time where the platform's Stat_t has one (see
// atime_*.go), else its modification time.
func atime(fi fs.FileInfo) time.Time {
	if t, ok := accessTime(fi); ok {
		return t
	}
	return fi.ModTime()
}

// copyFile replaces dst with a copy of src, with src's mode and times.
func copyFile(src, dst string, si fs.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".bench-tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, si.Mode().Perm()|si.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	if err := os.Chtimes(tmp, atime(si), si.ModTime()); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
