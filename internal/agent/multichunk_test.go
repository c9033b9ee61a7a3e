package agent_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embassy-project/embassy/internal/agent"
)

// TestRestoreFilesOfManyChunks: files of several chunks, which restore
// writes chunk by chunk in pack order (not file order) among many small
// files, come back exactly: content, a chunk repeated within a file,
// read-only and set-user-ID modes, and times, which the last chunk written
// applies.
func TestRestoreFilesOfManyChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, t.TempDir())
	src := filepath.Join(e.dir, "src")
	for d := range 3 {
		dir := filepath.Join(src, fmt.Sprintf("small%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 200 {
			doc := fmt.Sprintf(`{"company":%d,"dir":%d,"name":"firm %d"}`, i, d, i*7+d)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%04d.json", i)), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	block := randomBytes(3<<20, 11)
	files := map[string]struct {
		data []byte
		mode os.FileMode
	}{
		"big.bin":  {randomBytes(40<<20, 12), 0o644},
		"dup.bin":  {bytes.Repeat(block, 4), 0o644},
		"ro.bin":   {randomBytes(9<<20, 13), 0o400},
		"suid.bin": {randomBytes(6<<20, 14), 0o4755},
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for name, f := range files {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	b := e.mustBackup(src)
	target := filepath.Join(e.dir, "restored")
	r := e.restore("latest", target)
	t.Logf("backup %+v", *b)
	t.Logf("restore %+v", *r)
	compare(t, src, filepath.Join(target, "src"))
	if r.Files != 600+4 {
		t.Errorf("restored %d files, want 604", r.Files)
	}
	if r.PackFetches > uint64(r.Packs) {
		t.Errorf("fetched %d packs for %d: some more than once", r.PackFetches, r.Packs)
	}
	// A frame that would take a pack past PackTarget closes it first, so
	// no shard is larger than a PackTarget pack's (sealed, half of it, plus
	// the shard header and padding); 61 MiB of incompressible chunks of
	// up to 4 MiB would otherwise overshoot.
	maxShard := int64(agent.PackTarget/2 + 4096)
	var shards, largest int64
	err := filepath.WalkDir(filepath.Join(e.dir, "hosts", hostNames[0], "shards"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		shards++
		largest = max(largest, fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if shards < 4 || largest > maxShard || largest < maxShard*7/8 {
		t.Errorf("%d shards on %s, the largest %d bytes: want at least 4, the largest at most %d and near it",
			shards, hostNames[0], largest, maxShard)
	}
}
