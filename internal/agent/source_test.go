package agent_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/agent"
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
	var st syscall.Stat_t
	if err := syscall.Stat(reg, &st); err != nil {
		t.Fatal(err)
	}
	if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); !at.Equal(old) {
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
