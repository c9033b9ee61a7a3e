package fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/shardstore/storetest"
	"github.com/embassy-project/embassy/internal/wire"
)

var (
	ctx    = context.Background()
	update = flag.Bool("update", false, "rewrite the golden store in testdata/shard/store-v1")
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) shardstore.Store {
		s, err := Open(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustFsckClean(t *testing.T, s *Store) Report {
	t.Helper()
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatalf("Fsck: %v", err)
	}
	if !r.Clean() {
		t.Fatalf("Fsck not clean: %+v", r)
	}
	return r
}

func TestLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := mustOpen(t, dir)
	if s.Dir() != dir {
		t.Fatalf("Dir() = %q", s.Dir())
	}
	data, id := storetest.Object(1, 100)
	if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shards", id.String()[:2], id.String())
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("object not at %s: %v", path, err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("object mode %v, want 0444", fi.Mode().Perm())
	}
	marker, err := os.ReadFile(filepath.Join(dir, "embassy-store"))
	if err != nil || string(marker) != "embassy-store 1\n" {
		t.Fatalf("marker = %q, %v", marker, err)
	}
	for _, sub := range []string{"tmp", "shards", "envelopes"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", sub, err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp holds %d files after Put", len(tmp))
	}
	// Reopen and read.
	s2 := mustOpen(t, dir)
	got, err := s2.Get(ctx, shardstore.KindShard, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after reopen: %v", err)
	}
	if r := mustFsckClean(t, s2); r.Objects != 1 || r.Bytes != 100 {
		t.Fatalf("Fsck = %+v", r)
	}
}

func TestOpen(t *testing.T) {
	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		ok    bool
	}{
		{"missing", func(t *testing.T, dir string) {}, true},
		{"empty", func(t *testing.T, dir string) { os.Mkdir(dir, 0o755) }, true},
		{"mount point", func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "lost+found"), 0o700) }, true},
		{"crash during create", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "tmp", "put-123"), "x") }, true},
		{"marker only", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "embassy-store"), "embassy-store 1\n") }, true},
		{"other files", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "photo.jpg"), "x") }, false},
		{"layout without marker", func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "shards"), 0o755) }, false},
		{"future version", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "embassy-store"), "embassy-store 2\n") }, false},
		{"foreign marker", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "embassy-store"), "hello") }, false},
		{"a file", func(t *testing.T, dir string) { write(t, dir, "x") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			tc.setup(t, dir)
			s, err := Open(dir)
			if !tc.ok {
				if err == nil {
					t.Fatal("Open accepted the directory")
				}
				if tc.name != "a file" && !errors.Is(err, ErrNotStore) {
					t.Fatalf("Open = %v, want ErrNotStore", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustFsckClean(t, s)
			if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
				t.Fatalf("Open left %d temp files", len(tmp))
			}
		})
	}
}

func TestStaleTempFilesIgnoredAndRemoved(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	data, id := storetest.Object(2, 4096)
	// A crash after writing a temp file (complete or partial) leaves it in tmp/.
	for i, b := range [][]byte{data, data[:100], nil} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", fmt.Sprintf("put-%d", i)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, shardstore.KindShard, id); !errors.Is(err, shardstore.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	n := 0
	if err := s.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("List = %v, %d objects", err, n)
	}
	if r := mustFsckClean(t, s); r.TempFiles != 3 {
		t.Fatalf("Fsck TempFiles = %d, want 3", r.TempFiles)
	}
	s = mustOpen(t, dir)
	if r := mustFsckClean(t, s); r.TempFiles != 0 {
		t.Fatalf("after reopen TempFiles = %d", r.TempFiles)
	}
}

func TestDamagedObjects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"flipped first byte", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"flipped last byte", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"emptied", func(b []byte) []byte { return nil }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := mustOpen(t, dir)
			data, id := storetest.Object(3, 10000)
			if err := s.Put(ctx, shardstore.KindEnvelope, id, data); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "envelopes", id.String()[:2], id.String())
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(bytes.Clone(data)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := s.Get(ctx, shardstore.KindEnvelope, id)
			if !errors.Is(err, wire.ErrCorrupt) || !strings.Contains(err.Error(), id.String()) {
				t.Fatalf("Get = %v, want ErrCorrupt naming %s", err, id)
			}
			r, err := s.Fsck(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Clean() || !slices.Equal(r.Damaged, []DamagedObject{{shardstore.KindEnvelope, id}}) {
				t.Fatalf("Fsck = %+v, want the object damaged", r)
			}
			// A re-put never overwrites; a size change is reported.
			err = s.Put(ctx, shardstore.KindEnvelope, id, data)
			if sizeChanged := len(tc.damage(bytes.Clone(data))) != len(data); sizeChanged != (err != nil) {
				t.Fatalf("re-Put of a damaged object = %v", err)
			}
			if err != nil && !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("re-Put of a truncated object = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestFsckStray(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	data, id := storetest.Object(4, 10)
	if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
		t.Fatal(err)
	}
	h := id.String()
	strays := []string{
		"notes.txt",
		filepath.Join("shards", "zz"),
		filepath.Join("shards", h[:2], "readme"),
		filepath.Join("shards", h[:2], strings.ToUpper(h)),
	}
	// An object filed under the wrong fan-out directory is stray, too.
	other := "00"
	if h[:2] == other {
		other = "01"
	}
	os.MkdirAll(filepath.Join(dir, "envelopes", other), 0o700)
	strays = append(strays, filepath.Join("envelopes", other, h))
	for _, p := range strays {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(r.Stray)
	slices.Sort(strays)
	if !slices.Equal(r.Stray, strays) || r.Objects != 1 || len(r.Damaged) != 0 {
		t.Fatalf("Fsck = %+v, want strays %v", r, strays)
	}
	n := 0
	s.List(ctx, shardstore.KindShard, func(shardstore.ID, int64) error { n++; return nil })
	if n != 1 {
		t.Fatalf("List saw %d objects, want 1", n)
	}
}

// faultOps fails the named operation with err; "write" may first write half.
type faultOps struct {
	osOps
	fail         string
	skip         int // calls of fail to let through before failing
	err          error
	partialWrite bool
}

// failing reports whether this call of op is to fail.
func (o *faultOps) failing(op string) bool {
	if o.fail != op {
		return false
	}
	if o.skip > 0 {
		o.skip--
		return false
	}
	return true
}

type faultFile struct {
	*os.File
	ops *faultOps
}

func (o *faultOps) CreateTemp(dir, pattern string) (tempFile, error) {
	if o.fail == "create" {
		return nil, &iofs.PathError{Op: "open", Path: dir, Err: o.err}
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return faultFile{f, o}, nil
}

func (f faultFile) Write(b []byte) (int, error) {
	if f.ops.fail == "write" {
		n := 0
		if f.ops.partialWrite {
			n, _ = f.File.Write(b[:len(b)/2])
		}
		return n, &iofs.PathError{Op: "write", Path: f.Name(), Err: f.ops.err}
	}
	return f.File.Write(b)
}

func (f faultFile) Chmod(m os.FileMode) error {
	if f.ops.fail == "chmod" {
		return f.ops.err
	}
	return f.File.Chmod(m)
}

func (f faultFile) Sync() error {
	if f.ops.fail == "sync" {
		return f.ops.err
	}
	return f.File.Sync()
}

func (f faultFile) Close() error {
	err := f.File.Close()
	if f.ops.fail == "close" {
		return f.ops.err
	}
	return err
}

func (o *faultOps) Link(oldname, newname string) error {
	if o.fail == "link" {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: o.err}
	}
	return o.osOps.Link(oldname, newname)
}

func (o *faultOps) Mkdir(name string, perm os.FileMode) error {
	if o.fail == "mkdir" {
		return o.err
	}
	return o.osOps.Mkdir(name, perm)
}

func (o *faultOps) SyncDir(name string) error {
	if o.failing("syncdir") {
		return o.err
	}
	return o.osOps.SyncDir(name)
}

// TestPutFaults fails each step of Put in turn: Put must report the error,
// and — for every step before the object is linked into place — leave no
// trace: no object, no temp file, a clean fsck. A retry then succeeds.
func TestPutFaults(t *testing.T) {
	eio := errors.New("injected I/O error")
	for _, tc := range []struct {
		fail    string
		skip    int
		err     error
		partial bool
		visible bool // the object is in place although Put failed
	}{
		{fail: "mkdir", err: eio},
		{fail: "create", err: syscall.ENOSPC},
		{fail: "write", err: eio},
		{fail: "write", err: syscall.ENOSPC, partial: true},
		{fail: "write", err: syscall.EDQUOT, partial: true},
		{fail: "chmod", err: eio},
		{fail: "sync", err: eio},
		{fail: "close", err: eio},
		{fail: "link", err: eio},
		{fail: "link", err: syscall.ENOSPC},
		{fail: "syncdir", err: eio},                         // the kind directory, after creating the fan-out one
		{fail: "syncdir", skip: 1, err: eio, visible: true}, // the fan-out directory, after the link
	} {
		t.Run(fmt.Sprintf("%s/%d/%v/partial=%v", tc.fail, tc.skip, tc.err, tc.partial), func(t *testing.T) {
			dir := t.TempDir()
			ops := &faultOps{fail: tc.fail, skip: tc.skip, err: tc.err, partialWrite: tc.partial}
			s, err := open(dir, &faultOps{}) // open with working ops
			if err != nil {
				t.Fatal(err)
			}
			s.ops = ops
			data, id := storetest.Object(5, 1<<20)
			err = s.Put(ctx, shardstore.KindShard, id, data)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Put = %v, want %v", err, tc.err)
			}
			if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
				t.Fatalf("failed Put left %d temp files", len(tmp))
			}
			_, gerr := s.Get(ctx, shardstore.KindShard, id)
			if tc.visible {
				if gerr != nil {
					t.Fatalf("Get = %v", gerr)
				}
			} else if !errors.Is(gerr, shardstore.ErrNotFound) {
				t.Fatalf("failed Put left the object visible: Get = %v", gerr)
			}
			mustFsckClean(t, s)
			// The fault clears; the retry succeeds and the object is whole.
			ops.fail = ""
			if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
				t.Fatalf("retry: %v", err)
			}
			got, err := s.Get(ctx, shardstore.KindShard, id)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("Get after retry: %v", err)
			}
			mustFsckClean(t, s)
		})
	}
}

func TestOpenFaults(t *testing.T) {
	for _, fail := range []string{"mkdir", "create", "write", "sync", "link", "syncdir"} {
		t.Run(fail, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if _, err := open(dir, &faultOps{fail: fail, err: syscall.EIO}); !errors.Is(err, syscall.EIO) {
				t.Fatalf("open = %v, want EIO", err)
			}
			// A later Open with working I/O completes the layout.
			s := mustOpen(t, dir)
			mustFsckClean(t, s)
		})
	}
}

// TestCrashKill9 kills a process that is putting objects in a loop and checks
// that the store it leaves behind is clean and holds every acknowledged object.
func TestCrashKill9(t *testing.T) {
	if dir := os.Getenv("EMBASSY_FS_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process; skipped in -short mode")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$")
	cmd.Env = append(os.Environ(), "EMBASSY_FS_CRASH_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []shardstore.ID
	sc := bufio.NewScanner(out)
	for len(acked) < 40 && sc.Scan() {
		id, err := shardstore.ParseID(sc.Text())
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked = append(acked, id)
	}
	cmd.Process.Kill() // SIGKILL, mid-Put with high probability
	cmd.Wait()
	if len(acked) < 40 {
		t.Fatalf("child acknowledged only %d objects", len(acked))
	}
	s := mustOpen(t, dir)
	r := mustFsckClean(t, s)
	if r.Objects < len(acked) {
		t.Fatalf("Fsck found %d objects, child acknowledged %d", r.Objects, len(acked))
	}
	for _, id := range acked {
		if _, err := s.Get(ctx, shardstore.KindShard, id); err != nil {
			t.Fatalf("acknowledged object: %v", err)
		}
	}
}

func crashChild(dir string) {
	s, err := Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := uint64(0); ; i++ {
		data, id := storetest.Object(i, 256<<10)
		if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(id)
	}
}

// TestGoldenStore opens a copy of a committed version-1 store directory, so a
// later version keeps reading the layout.
func TestGoldenStore(t *testing.T) {
	src := filepath.Join("..", "..", "..", "testdata", "shard", "store-v1")
	if *update {
		writeGoldenStore(t, src)
	}
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, dir)
	r := mustFsckClean(t, s)
	if r.Objects != 2 {
		t.Fatalf("golden store holds %d objects, want 2", r.Objects)
	}
	for _, kind := range shardstore.Kinds() {
		n := 0
		err := s.List(ctx, kind, func(id shardstore.ID, size int64) error {
			n++
			_, err := s.Get(ctx, kind, id)
			return err
		})
		if err != nil || n != 1 {
			t.Fatalf("%s: %d objects, %v", kind, n, err)
		}
	}
}

func writeGoldenStore(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, dir)
	shard, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "shard", "3of5-1000", "shard-00.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for kind, data := range map[shardstore.Kind][]byte{
		shardstore.KindShard:    shard,
		shardstore.KindEnvelope: []byte("golden envelope v1\n"),
	} {
		if err := s.Put(ctx, kind, shardstore.Sum(data), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "tmp")); err != nil { // git keeps no empty directories
		t.Fatal(err)
	}
}

func BenchmarkPut(b *testing.B) {
	for _, size := range []int{64 << 10, 8 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			data, _ := storetest.Object(6, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				data[0], data[1], data[2], data[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
				id := shardstore.Sum(data)
				b.StartTimer()
				if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	for _, size := range []int{64 << 10, 8 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			data, id := storetest.Object(7, size)
			if err := s.Put(ctx, shardstore.KindShard, id, data); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, shardstore.KindShard, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPutChecked: PutChecked stores without hashing again what its caller
// has checked; stored under a wrong address by a faulty caller, the object
// fails closed: Get and Fsck report it corrupt, and nothing is returned
// for it.
func TestPutChecked(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	data, id := storetest.Object(4, 70000)
	if err := s.PutChecked(ctx, shardstore.KindShard, id, data); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, shardstore.KindShard, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v; want the %d put", len(got), err, len(data))
	}
	_, wrong := storetest.Object(5, 1000)
	if err := s.PutChecked(ctx, shardstore.KindShard, wrong, data[:1000]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, shardstore.KindShard, wrong); !errors.Is(err, wire.ErrCorrupt) || got != nil {
		t.Fatalf("Get of an object put under a wrong address = %d bytes, %v; want ErrCorrupt", len(got), err)
	}
	r, err := s.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Damaged, []DamagedObject{{shardstore.KindShard, wrong}}) {
		t.Fatalf("Fsck = %+v, want the wrongly addressed object damaged", r)
	}
	if err := s.PutChecked(ctx, shardstore.Kind("nope"), id, data); err == nil {
		t.Fatal("PutChecked of an unknown kind succeeded")
	}
}
