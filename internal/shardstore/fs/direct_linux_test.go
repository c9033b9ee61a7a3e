package fs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/testenv"
)

// supportsDirect reports whether dir's file system takes O_DIRECT.
func supportsDirect(t *testing.T, dir string) bool {
	fd, err := unix.Open(filepath.Join(dir, "probe"), unix.O_CREAT|unix.O_WRONLY|unix.O_DIRECT, 0o600)
	if errors.Is(err, unix.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	os.Remove(filepath.Join(dir, "probe"))
	return true
}

// Large page-aligned objects bypass the page cache; unaligned or small
// ones are written normally; every one reads back byte for byte, whatever
// the length's remainder modulo 4 KiB.
func TestPutDirect(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, filepath.Join(dir, "store"))
	direct := supportsDirect(t, dir)
	if !direct {
		// The fallback cases below still run first.
		defer testenv.SkipOrFail(t, "%s does not support O_DIRECT: only the fallback was tested", dir)
	}
	big := make([]byte, 5<<20) // a large allocation: page-aligned
	if uintptr(unsafe.Pointer(&big[0]))%directAlign != 0 {
		t.Fatal("a 5 MiB allocation is not page-aligned; the test needs another way to align")
	}
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	cases := []struct {
		name   string
		data   []byte
		direct bool
	}{
		{"aligned, 4 KiB multiple", big[:4<<20], true},
		{"aligned, with a tail", big[:3<<20+777], true},
		{"unaligned", big[1 : 2<<20], false},
		{"small", big[:64<<10], false},
	}
	for _, c := range cases {
		before := directWrites.Load()
		id := shardstore.Sum(c.data)
		if err := s.Put(context.Background(), shardstore.KindShard, id, c.data); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := directWrites.Load() - before; got != int64(b2i(direct && c.direct)) {
			t.Fatalf("%s: %d direct writes, want %d", c.name, got, b2i(direct && c.direct))
		}
		got, err := os.ReadFile(s.path(shardstore.KindShard, id))
		if err != nil || !bytes.Equal(got, c.data) {
			t.Fatalf("%s: read back %d bytes (%v), want %d equal", c.name, len(got), err, len(c.data))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
