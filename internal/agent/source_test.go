package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/agent"
	"github.com/embassy-project/embassy/internal/chunk"
)

// TestOpenRegular: the walker's opener reads a regular file exactly, leaves
// its access time alone, and refuses, without blocking, whatever took a
// listed file's place: a symlink (not followed), a FIFO, a directory.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(300<<10, 9)
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// An access time older than the modification time: relatime updates
	// it on the next read unless the reader asks it not to.
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(reg, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	f, err := agent.OpenRegular(reg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(data))
	}
	if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v; want 0, EOF", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second close: %v; want ErrClosed", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(reg, &st); err != nil {
		t.Fatal(err)
	}
	if at := time.Unix(st.Atim.Unix()); !at.Equal(old) {
		t.Errorf("reading changed the access time to %v; want %v kept", at, old)
	}

	link := filepath.Join(dir, "link")
	fifo := filepath.Join(dir, "fifo")
	sub := filepath.Join(dir, "sub")
	if err := os.Symlink(reg, link); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		link: "changed into a symlink",
		fifo: "changed into a p",
		sub:  "changed into a d",
	} {
		f, err := agent.OpenRegular(path)
		if err == nil {
			f.Close()
			t.Errorf("%s opened; want an error", path)
			continue
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q naming it", path, err, want)
		}
	}
	if _, err := agent.OpenRegular(filepath.Join(dir, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v; want ErrNotExist", err)
	}
}

// TestFileSwappedForSymlink: a file replaced by a symlink between the
// listing and the read fails the backup, naming it; the link's target (a
// file outside the backed-up tree) is not stored under the file's name.
func TestFileSwappedForSymlink(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(src, "b.json")
	for _, name := range []string{"a.json", "b.json", "c.json"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(`{"name":"`+name+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(e.dir, "secret")
	if err := os.WriteFile(secret, []byte("not for the backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	reset := agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		if p == victim {
			if err := os.Remove(p); err != nil {
				return nil, err
			}
			if err := os.Symlink(secret, p); err != nil {
				return nil, err
			}
		}
		return agent.OpenRegular(p)
	})
	_, err := e.backup(src)
	reset()
	if err == nil || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("backup: %v; want an error naming %s as a symlink now", err, victim)
	}
	if got := e.envelopes(); !slices.Equal(got, []int{0, 0, 0}) {
		t.Fatalf("the failed backup published envelopes %v", got)
	}
}

// TestEntryGoneBeforeStat: an entry the listing names but that is gone
// when the walker stats it is left out; the rest is backed up and
// restores exactly.
func TestEntryGoneBeforeStat(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.json", "sub/b.json", "sub/c.bin"} {
		data := []byte(`{"name":"` + name + `"}`)
		if strings.HasSuffix(name, ".bin") {
			data = randomBytes(700<<10, 5)
		}
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reset := agent.SetReadDir(func(p string, d *os.File) ([]os.DirEntry, error) {
		ents, err := d.ReadDir(-1)
		if err != nil {
			return nil, err
		}
		return append(ents, ghost("0-ghost"), ghost("zz-ghost")), nil
	})
	r := e.mustBackup(src)
	reset()
	if r.Files != 3 || r.Dirs != 2 {
		t.Fatalf("backup saw %d files, %d dirs; want 3, 2", r.Files, r.Dirs)
	}
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
}

// ghost is a directory entry for a file that does not exist.
type ghost string

func (g ghost) Name() string               { return string(g) }
func (g ghost) IsDir() bool                { return false }
func (g ghost) Type() fs.FileMode          { return 0 }
func (g ghost) Info() (fs.FileInfo, error) { return nil, fs.ErrNotExist }

// TestSmallFilesUnderLowFileLimit: readers hold a batch of small files
// open at once (so that their reads are in flight together), and size
// their batches to the limit on open files. Readers slowed down so that all
// hold a batch at once keep more than one file each open under the usual
// limit; under a soft limit of 320 descriptors, where 16 readers of 64-file
// batches would fail with "too many open files", the backup takes fewer at
// a time and stores every file exactly: directories of files mixed with
// subdirectories, files of every size class around the small-file limit.
func TestSmallFilesUnderLowFileLimit(t *testing.T) {
	// Not parallel: the limit is the process's.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	const lowLimit = 320
	if lim.Cur < 4*lowLimit {
		t.Skipf("the soft limit on open files is already %d", lim.Cur)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) }) // also after a Fatal
	var mu sync.Mutex
	var open, most int
	reset := agent.SetOpenFile(func(p string) (io.ReadCloser, error) {
		f, err := agent.OpenRegular(p)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		open++
		most = max(most, open)
		mu.Unlock()
		return &slowFile{f: f, closed: func() { mu.Lock(); open--; mu.Unlock() }}, nil
	})
	defer reset()

	for _, lowered := range []bool{false, true} {
		low := lim // Rlimit.Cur is uint64 on Linux, int64 on the BSDs
		if lowered {
			low.Cur = lowLimit
		}
		limit := low.Cur
		e := newEnv(t, t.TempDir())
		src := filepath.Join(e.dir, "src")
		for d := range 4 {
			dir := filepath.Join(src, fmt.Sprintf("d%d", d))
			for s := range 3 {
				if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("sub%d", s)), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 1000 {
				p := filepath.Join(dir, fmt.Sprintf("%05d.json", i))
				if i%300 == 7 {
					p = filepath.Join(dir, fmt.Sprintf("sub%d", i%3), fmt.Sprintf("%05d.json", i))
				}
				if err := os.WriteFile(p, fmt.Appendf(nil, `{"company":%d,"dir":%d}`, i, d), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i, size := range []int{0, 1, agent.SmallBlob - 1, agent.SmallBlob, chunk.MinSize - 1, chunk.MinSize, chunk.MinSize + 1} {
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("size%d", i)), randomBytes(size, uint64(i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		most = 0
		mu.Unlock()
		_, err := e.backup(src)
		if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			t.Fatalf("backup under a limit of %d open files: %v", limit, err)
		}
		t.Logf("limit %d: at most %d source files open at once", limit, most)
		if !lowered && most <= agent.Readers {
			t.Errorf("at most %d files open at once; want the %d readers to hold batches of them", most, agent.Readers)
		}
		if lowered && most > lowLimit/4 {
			t.Errorf("at most %d files open at once under a limit of %d; want a quarter of it at most", most, limit)
		}
		target := filepath.Join(e.dir, "restored")
		r := e.restore("latest", target)
		compare(t, src, filepath.Join(target, "src"))
		if want := uint64(4*1000 + 7); r.Files != want {
			t.Errorf("restored %d files, want %d", r.Files, want)
		}
	}
}

// slowFile is an open source file whose first read waits a millisecond,
// as a cold disk's would, so that every reader holds a batch at once.
type slowFile struct {
	f      io.ReadCloser
	waited bool
	closed func()
}

func (s *slowFile) Read(p []byte) (int, error) {
	if !s.waited {
		s.waited = true
		time.Sleep(time.Millisecond)
	}
	return s.f.Read(p)
}

func (s *slowFile) Close() error {
	s.closed()
	return s.f.Close()
}

// TestEntryChangedAfterListing: the walker opens the files it lists as
// regular relative to their directory and stats them through the
// descriptor, so an entry that changes between the listing and the open is
// taken for what it is at the open, and the backup goes on: a file swapped
// for a symlink to a secret is stored as that symlink (the secret is not
// read), one swapped for a FIFO is skipped without blocking, one swapped
// for a directory is backed up as the directory, a removed one is left
// out; the rest is stored exactly.
func TestEntryChangedAfterListing(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.json", "link.json", "fifo.json", "dir.json", "gone.json", "z.json"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(`{"name":"`+name+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "big.bin"), randomBytes(700<<10, 11), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(e.dir, "secret")
	if err := os.WriteFile(secret, []byte("not for the backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Lstat(src)
	must(err)
	reset := agent.SetReadDir(func(p string, d *os.File) ([]os.DirEntry, error) {
		ents, err := d.ReadDir(-1)
		if err != nil || p != src {
			return ents, err
		}
		link, fifo, dir := filepath.Join(src, "link.json"), filepath.Join(src, "fifo.json"), filepath.Join(src, "dir.json")
		must(os.Remove(link))
		must(os.Symlink(secret, link))
		must(os.Remove(fifo))
		must(syscall.Mkfifo(fifo, 0o644))
		must(os.Remove(dir))
		must(os.Mkdir(dir, 0o755))
		must(os.WriteFile(filepath.Join(dir, "inner.json"), []byte(`{"inner":true}`), 0o644))
		must(os.Remove(filepath.Join(src, "gone.json")))
		// The directory's mtime as listed, so that the restored tree
		// compares equal.
		must(os.Chtimes(src, st.ModTime(), st.ModTime()))
		return ents, nil
	})
	r, err := e.backup(src)
	reset()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	fifo := filepath.Join(src, "fifo.json")
	if !slices.Equal(r.Skipped, []string{fifo}) {
		t.Errorf("skipped %q, want the FIFO %q", r.Skipped, fifo)
	}
	if r.Files != 4 || r.Dirs != 2 || r.Symlinks != 1 {
		t.Errorf("%d files, %d dirs, %d symlinks; want 4 (a, z, big, dir.json/inner), 2, 1", r.Files, r.Dirs, r.Symlinks)
	}
	must(os.Remove(fifo))
	must(os.Chtimes(src, st.ModTime(), st.ModTime()))
	target := filepath.Join(e.dir, "restored")
	e.restore("latest", target)
	compare(t, src, filepath.Join(target, "src"))
	if got, err := os.Readlink(filepath.Join(target, "src", "link.json")); err != nil || got != secret {
		t.Errorf("restored link.json: %q, %v; want a symlink to %s", got, err, secret)
	}
}

// TestCancelWhileWalkerHoldsFiles: the walker opens the files it lists
// and hands them to the readers in batches; a backup cancelled while
// batches are gathered, queued and read closes every one of those files
// and leaves no goroutine behind.
func TestCancelWhileWalkerHoldsFiles(t *testing.T) {
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	for d := range 40 {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range 150 {
			doc := fmt.Sprintf("{\"company\": %d, \"dir\": %d}\n", f, d)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%03d.json", f)), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	openFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count open files: %v", err)
		}
		return len(ents)
	}
	stop := errors.New("operator pressed ^C")
	for _, at := range []int64{2, 15, 35} {
		fds, goroutines := openFDs(), runtime.NumGoroutine()
		ctx, cancel := context.WithCancelCause(context.Background())
		var listed atomic.Int64
		reset := agent.SetReadDir(func(p string, d *os.File) ([]os.DirEntry, error) {
			if listed.Add(1) == at {
				cancel(stop)
			}
			return d.ReadDir(-1)
		})
		_, err := agent.Backup(ctx, e.home, agent.Options{Dataset: dataset, Hostname: "test", Path: src})
		reset()
		cancel(nil)
		if !errors.Is(err, stop) {
			t.Fatalf("cancelled at listing %d: %v; want the cancellation's cause", at, err)
		}
		waitGoroutines(t, goroutines, "a cancelled backup")
		if n := openFDs(); n > fds {
			t.Fatalf("cancelled at listing %d: %d files open, %d before", at, n, fds)
		}
	}
	if got := e.envelopes(); !slices.Equal(got, []int{0, 0, 0}) {
		t.Fatalf("cancelled backups published envelopes %v", got)
	}
	r := e.mustBackup(src)
	if r.Files != 40*150 {
		t.Fatalf("backup after the cancelled ones: %d files", r.Files)
	}
}
