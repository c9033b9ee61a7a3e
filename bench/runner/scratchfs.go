package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Restores write into a file system made afresh for each one. On ext4 a
// restore's speed depends on how recently the previous restore's files
// were deleted from the same file system: creating a file then scans the
// recently freed inodes (recently_deleted), and on the benchmark machine
// the same embassy restore took 10.4, 12.4 and 14.3 s into freshly emptied
// directories, restic's 23–30 s, and by hand up to 28 s with 40 s of
// system CPU. Every tool gets the same new, empty file system instead: an
// ext4 image on the work disk, its inode tables written at mkfs time (so no
// background initialisation runs during the restore), attached to a loop
// device with direct I/O (so the image's pages are not cached twice).
//
// The modes: "fresh" requires it (root, mkfs.ext4, losetup, mount), "dir"
// restores into a directory on the work disk as before, and "auto" tries
// fresh and falls back to dir, saying why in the results.

// restoreFS says where one run's restore goes.
type restoreFS struct {
	fresh  bool   // a new file system per restore
	reason string // why not, when the mode was auto
}

// describe is the results' sentence on the restore target.
func (r restoreFS) describe() string {
	if r.fresh {
		return "a fresh ext4 file system per restore (an image on the work disk, inode tables initialised at mkfs, loop device with direct I/O), unmounted and deleted after the restore is checked"
	}
	if r.reason != "" {
		return "a directory on the work disk, emptied before each restore (a fresh file system was not possible: " + r.reason + ")"
	}
	return "a directory on the work disk, emptied before each restore"
}

// chooseRestoreFS resolves mode, probing with a small file system in work
// when it is auto or fresh.
func chooseRestoreFS(ctx context.Context, mode, work string) (restoreFS, error) {
	switch mode {
	case "dir":
		return restoreFS{}, nil
	case "fresh", "auto":
	default:
		return restoreFS{}, fmt.Errorf("--restore-fs %q: want fresh, dir or auto", mode)
	}
	s, err := makeScratchFS(ctx, work, 64<<20, 1024)
	if err == nil {
		err = s.remove(ctx)
	}
	if err != nil {
		if mode == "fresh" {
			return restoreFS{}, fmt.Errorf("--restore-fs fresh: %w", err)
		}
		return restoreFS{reason: firstLine(err.Error())}, nil
	}
	return restoreFS{fresh: true}, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// scratchFS is an ext4 image mounted through a loop device.
type scratchFS struct {
	img, dev, mnt string
	removed       bool // remove succeeded: takeDown has nothing to do
}

// makeScratchFS makes an ext4 file system of size bytes and inodes inodes
// in an image under dir and mounts it at dir/restore-fs, first taking down
// any left by an interrupted run.
func makeScratchFS(ctx context.Context, dir string, size int64, inodes int) (*scratchFS, error) {
	s := &scratchFS{img: filepath.Join(dir, "restore.img"), mnt: filepath.Join(dir, "restore-fs")}
	s.takeDown(ctx)
	if err := os.Remove(s.img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.Create(s.img)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("restore image: %w", err)
	}
	fail := func(err error) (*scratchFS, error) {
		s.takeDown(ctx)
		_ = os.Remove(s.img)
		return nil, err
	}
	if err := runQuiet(ctx, "", nil, "mkfs.ext4", "-q", "-F", "-m", "0", "-N", fmt.Sprint(inodes),
		"-E", "lazy_itable_init=0,lazy_journal_init=0", s.img); err != nil {
		return fail(err)
	}
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=on", s.img).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("losetup: %w: %s", err, strings.TrimSpace(string(out))))
	}
	s.dev = strings.TrimSpace(string(out))
	if err := os.MkdirAll(s.mnt, 0o755); err != nil {
		return fail(err)
	}
	if err := runQuiet(ctx, "", nil, "mount", "-t", "ext4", s.dev, s.mnt); err != nil {
		return fail(err)
	}
	return s, nil
}

// takeDown unmounts s.mnt and detaches every loop device backed by s.img,
// ignoring what is not there.
func (s *scratchFS) takeDown(ctx context.Context) {
	if s.removed {
		return
	}
	_ = exec.CommandContext(ctx, "umount", s.mnt).Run()
	out, _ := exec.CommandContext(ctx, "losetup", "--noheadings", "--output", "NAME", "--associated", s.img).Output()
	for _, dev := range strings.Fields(string(out)) {
		_ = exec.CommandContext(ctx, "losetup", "--detach", dev).Run()
	}
}

// remove unmounts the file system, detaches its loop device and deletes
// the image.
func (s *scratchFS) remove(ctx context.Context) error {
	if err := runQuiet(ctx, "", nil, "umount", s.mnt); err != nil {
		return err
	}
	if err := runQuiet(ctx, "", nil, "losetup", "--detach", s.dev); err != nil {
		return err
	}
	if err := os.Remove(s.img); err != nil {
		return err
	}
	if err := os.Remove(s.mnt); err != nil {
		return err
	}
	s.removed = true
	return nil
}

// scratchSize is the image size and inode count for restoring a corpus of
// bytes in files: room for the edited tree twice over plus two 4 KiB
// blocks a file (a 350-byte file takes a whole block: the 1 GB corpus's
// 455 000 small files take 1.9 GB), 512 MiB for the journal and inode
// tables, and a quarter more inodes than files. The image is sparse: only
// what the restore writes takes space on the work disk.
func scratchSize(bytes int64, files int) (int64, int) {
	size := 2*bytes + int64(files)*8192 + 512<<20
	return (size + 4095) &^ 4095, files + files/4 + 10000
}
