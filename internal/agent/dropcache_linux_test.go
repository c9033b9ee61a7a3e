//go:build linux

package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/embassy-project/embassy/internal/agent"
)

// cacheStat is cachestat of bytes [off, off+n) of path (to its end if n is
// 0).
func cacheStat(t *testing.T, path string, off, n int64) unix.Cachestat_t {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{Off: uint64(off), Len: uint64(n)}, &st, 0); err != nil {
		t.Skipf("cachestat: %v (Linux 6.5 or later needed)", err)
	}
	return st
}

// cachedPages is how many of path's pages are in the page cache.
func cachedPages(t *testing.T, path string) uint64 {
	t.Helper()
	return cacheStat(t, path, 0, 0).Cache
}

// coldFile writes size random bytes to a new file name in a new directory
// and drops its pages from the page cache.
func coldFile(t *testing.T, name string, size int, seed uint64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, randomBytes(size, seed), 0o644); err != nil {
		t.Fatal(err)
	}
	evict(t, p)
	return p
}

// kept reports whether the pages cached in before are still cached in
// after, or were reclaimed by the kernel under memory pressure or by
// proactive reclaim (DAMON), which leaves an eviction record in their place.
// A drop (DONTNEED) leaves none, so missing pages without records are
// pages the backup dropped.
func kept(before, after unix.Cachestat_t) bool {
	return int64(after.Cache)+int64(after.Evicted)-int64(before.Evicted) >= int64(before.Cache)
}

// evict writes path's pages out and drops them from the page cache; the
// test is skipped where they stay (tmpfs keeps its pages).
func evict(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if n := cachedPages(t, path); n != 0 {
		t.Skipf("%s keeps %d pages cached after DONTNEED (tmpfs?)", path, n)
	}
}

// TestDropBehind: a backup drops from the page cache the pages of the files
// it brought in, a large file's as it reads it, and leaves the files that
// were cached before it started as they were; with KeepCache it drops
// nothing. What it stores is the same either way.
func TestDropBehind(t *testing.T) {
	sizes := map[string]int{
		"empty":       0,
		"small.json":  300,
		"text.txt":    40 << 10,
		"chunked.bin": 3<<20 + 17,
		// More than two read-behind steps, so that pages go while it is
		// still being read, and a tail.
		"large.bin": 2*agent.DropBehind + 5<<20 + 12345,
	}
	for _, keep := range []bool{false, true} {
		e := newEnv(t, t.TempDir())
		src := filepath.Join(e.dir, "src")
		files := map[string][]byte{}
		var seed uint64
		for _, d := range []string{"cold", "warm"} {
			if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, size := range sizes {
				seed++
				p := filepath.Join(src, d, name)
				files[p] = randomBytes(size, seed)
				if err := os.WriteFile(p, files[p], 0o644); err != nil {
					t.Fatal(err)
				}
				evict(t, p)
			}
		}
		warm := map[string]unix.Cachestat_t{}
		for name := range sizes {
			p := filepath.Join(src, "warm", name)
			// A clean-clone CI run, with other test binaries beside this
			// one, once found a file's last pages uncached right after
			// reading it: read again. The check below compares with what
			// was cached, counting evictions, so a few missing pages
			// change nothing; most of the file must be cached for it to
			// be warm at all.
			want := uint64((sizes[name] + os.Getpagesize() - 1) / os.Getpagesize())
			for range 5 {
				if _, err := os.ReadFile(p); err != nil {
					t.Fatal(err)
				}
				if warm[p] = cacheStat(t, p, 0, 0); warm[p].Cache >= want {
					break
				}
			}
			if got := warm[p].Cache; got < want {
				if got < want/2 || got == 0 {
					t.Fatalf("%s: %d pages cached after reading it five times, want %d", p, got, want)
				}
				t.Logf("%s: %d of %d pages cached after reading it five times", p, got, want)
			}
		}

		if _, err := e.backupOpts(agent.Options{Path: src, KeepCache: keep}); err != nil {
			t.Fatal(err)
		}

		for p := range files {
			st := cacheStat(t, p, 0, 0)
			switch before, ok := warm[p]; {
			case ok && !kept(before, st):
				t.Errorf("keep=%v: %s was cached (%d pages) before the backup, %d after (%d evicted)", keep, p, before.Cache, st.Cache, st.Evicted)
			case !ok && !keep && st.Cache != 0:
				t.Errorf("%s: %d pages left cached by the backup that read it", p, st.Cache)
			case !ok && keep && st.Cache == 0 && st.Evicted == 0 && len(files[p]) > 0:
				t.Errorf("KeepCache: %s's pages were dropped", p)
			}
		}

		target := filepath.Join(e.dir, "restored")
		e.restore("latest", target)
		for p, want := range files {
			rel, _ := filepath.Rel(src, p)
			got, err := os.ReadFile(filepath.Join(target, "src", rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("keep=%v: %s restored as %d bytes (%v), want the %d backed up", keep, rel, len(got), err, len(want))
			}
		}
	}
}

// TestDropBehindWhileReading: a file the reader brought into the page cache
// loses its pages behind the reader, before it is closed, so that a large
// file never fills the cache.
func TestDropBehindWhileReading(t *testing.T) {
	p := filepath.Join(t.TempDir(), "large")
	data := randomBytes(3*agent.DropBehind+4096, 5)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	evict(t, p)
	f, err := agent.OpenRegular(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	agent.DropBehindOf(f)
	buf := make([]byte, 1<<20)
	var got []byte
	for len(got) < 2*agent.DropBehind {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	var st unix.Cachestat_t
	fd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := unix.Cachestat(uint(fd.Fd()), &unix.CachestatRange{Off: 0, Len: 2 * agent.DropBehind}, &st, 0); err != nil {
		t.Fatal(err)
	}
	if st.Cache != 0 {
		t.Errorf("%d pages of the first %d bytes still cached after reading %d", st.Cache, 2*agent.DropBehind, len(got))
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Error("read other bytes than written")
	}
}

// TestDropBehindStopsAtTheListedEnd: at close the reader drops what it read
// and what read-ahead brought in, not pages past the size the file had when
// it was opened, which someone appending to it has in the cache.
func TestDropBehindStopsAtTheListedEnd(t *testing.T) {
	size := 3 * os.Getpagesize()
	p := coldFile(t, "log", size, 6)
	f, err := agent.OpenRegular(p)
	if err != nil {
		t.Fatal(err)
	}
	agent.DropBehindOf(f)
	buf := make([]byte, 2*size)
	if n, err := f.Read(buf); err != nil || n != size {
		t.Fatalf("read %d bytes, %v; want %d", n, err, size)
	}
	// Appended while the backup has the file open, written out (clean
	// pages, which DONTNEED would free) and in the appender's cache.
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(2*os.Getpagesize(), 7)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	var read, appended unix.Cachestat_t
	if err := unix.Cachestat(uint(fd.Fd()), &unix.CachestatRange{Off: 0, Len: uint64(size)}, &read, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Cachestat(uint(fd.Fd()), &unix.CachestatRange{Off: uint64(size), Len: 0}, &appended, 0); err != nil {
		t.Fatal(err)
	}
	if read.Cache != 0 || appended.Cache+appended.Evicted < 2 {
		t.Errorf("after close: %d pages cached of the %d read (want 0), %d of the 2 appended (want 2)", read.Cache, size/os.Getpagesize(), appended.Cache)
	}
}

// TestDropBehindLeavesOverlaysAlone: on an overlay the pages of a file are
// its real file's, which cachestat on the overlay's file does not see, so a
// hot file would look cold and be dropped for everyone who shares the
// layer. A backup of an overlay leaves the page cache alone. Needs root (to
// mount the overlay).
func TestDropBehindLeavesOverlaysAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
	dir := t.TempDir()
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{filepath.Join(lower, "src"), upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	under := filepath.Join(lower, "src", "hot.bin")
	if err := os.WriteFile(under, randomBytes(1<<20, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("mount overlay: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	evict(t, under)
	if _, err := os.ReadFile(filepath.Join(merged, "src", "hot.bin")); err != nil {
		t.Fatal(err)
	}
	hot := cacheStat(t, under, 0, 0)
	if hot.Cache == 0 {
		t.Skip("reading through the overlay cached nothing of the real file")
	}
	e := newEnv(t, t.TempDir())
	e.mustBackup(filepath.Join(merged, "src"))
	if st := cacheStat(t, under, 0, 0); !kept(hot, st) {
		t.Errorf("the real file behind the overlay had %d pages cached before the backup, %d after (%d evicted)", hot.Cache, st.Cache, st.Evicted)
	}
}

// TestDropBehindPartlyCached: of a large file partly cached when the backup
// opens it (a database whose hot part the machine keeps cached), the reader
// drops the DropBehind windows that held none of its pages and leaves the
// others, so that backing it up does not fill the cache with the rest.
func TestDropBehindPartlyCached(t *testing.T) {
	size := 3*agent.DropBehind + 12345 // four windows, the last partial
	p := coldFile(t, "db", size, 9)
	// The hot part: 64 KiB in the middle of the second window.
	w, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadAt(make([]byte, 64<<10), agent.DropBehind+agent.DropBehind/2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	window := func(i int) unix.Cachestat_t {
		return cacheStat(t, p, int64(i*agent.DropBehind), agent.DropBehind)
	}
	hot := window(1)
	if hot.Cache == 0 {
		t.Skip("reading 64 KiB cached nothing")
	}
	for _, i := range []int{0, 2, 3} {
		if n := window(i).Cache; n != 0 {
			t.Skipf("window %d has %d pages cached after reading only window 1 (read-ahead across windows)", i, n)
		}
	}

	f, err := agent.OpenRegular(p)
	if err != nil {
		t.Fatal(err)
	}
	agent.DropBehindOf(f)
	got, err := io.ReadAll(f)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, size)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2, 3} {
		if n := window(i).Cache; n != 0 {
			t.Errorf("window %d, cold at open: %d pages left cached", i, n)
		}
	}
	if st := window(1); !kept(hot, st) {
		t.Errorf("window 1, partly cached at open (%d pages): %d after (%d evicted)", hot.Cache, st.Cache, st.Evicted)
	}
}
