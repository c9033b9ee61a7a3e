package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embassy-project/embassy/internal/testenv"
)

// TestScratchFS makes a restore file system, writes into it, takes it down
// and leaves nothing behind: no mount, no loop device, no image. A second
// one made over the leftovers of an interrupted run (mounted, attached)
// replaces them.
func TestScratchFS(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "making a file system needs root")
	}
	for _, tool := range []string{"mkfs.ext4", "losetup", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipOrFail(t, "%s: %v", tool, err)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	size, inodes := scratchSize(32<<20, 1000)
	if size < 64<<20+1000*8192 || inodes < 1000 {
		t.Fatalf("scratchSize(32 MiB, 1000) = %d bytes, %d inodes", size, inodes)
	}
	s, err := makeScratchFS(ctx, dir, size, inodes)
	if err != nil {
		t.Fatal(err)
	}
	// An interrupted run leaves it mounted: the next one replaces it.
	s2, err := makeScratchFS(ctx, dir, size, inodes)
	if err != nil {
		t.Fatalf("over a mounted one: %v", err)
	}
	if attached(t, s.img) != 1 {
		t.Fatalf("%d loop devices on the image, want 1", attached(t, s.img))
	}
	if err := os.WriteFile(filepath.Join(s2.mnt, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); !strings.Contains(string(mounts), " "+s2.mnt+" ext4 ") {
		t.Fatalf("%s is not an ext4 mount", s2.mnt)
	}
	if err := s2.remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.img); !os.IsNotExist(err) {
		t.Fatalf("image left behind: %v", err)
	}
	if _, err := os.Stat(s2.mnt); !os.IsNotExist(err) {
		t.Fatalf("mount point left behind: %v", err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), s2.mnt) {
		t.Fatal("still mounted")
	}

	got, err := chooseRestoreFS(ctx, "fresh", dir)
	if err != nil || !got.fresh {
		t.Fatalf("fresh: %+v, %v", got, err)
	}
}

func attached(t *testing.T, img string) int {
	out, err := exec.Command("losetup", "--noheadings", "--output", "NAME", "--associated", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(string(out)))
}

// TestChooseRestoreFS: dir needs nothing, an unknown mode is an error, and
// auto falls back to a directory with the reason when no file system can be
// made (here: the work directory does not exist).
func TestChooseRestoreFS(t *testing.T) {
	ctx := context.Background()
	if got, err := chooseRestoreFS(ctx, "dir", t.TempDir()); err != nil || got.fresh || got.reason != "" {
		t.Fatalf("dir: %+v, %v", got, err)
	}
	if _, err := chooseRestoreFS(ctx, "tmpfs", t.TempDir()); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	got, err := chooseRestoreFS(ctx, "auto", missing)
	if err != nil || got.fresh || got.reason == "" || !strings.Contains(got.describe(), "not possible") {
		t.Fatalf("auto without a work directory: %+v, %v", got, err)
	}
	if _, err := chooseRestoreFS(ctx, "fresh", missing); err == nil {
		t.Fatal("fresh without a work directory succeeded")
	}
}
