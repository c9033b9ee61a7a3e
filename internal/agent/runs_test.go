package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/pack"
	"github.com/embassy-project/embassy/internal/snapshot"
)

// addBatch records one pack of the given IDs.
func addBatch(t *testing.T, c *cache, pid byte, ids []chunk.ID) {
	t.Helper()
	es := make([]pack.Entry, len(ids))
	for i, id := range ids {
		es[i] = pack.Entry{Type: pack.BlobData, ID: id, Offset: uint64(i) * 10, Length: uint64(i%100 + 1), RawLength: uint64(i%100 + 1)}
	}
	if err := c.addPack(&snapshot.PackRef{ID: [16]byte{pid}}, es); err != nil {
		t.Fatal(err)
	}
}

func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, runsDir))
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, de := range des {
		ns = append(ns, de.Name())
	}
	return ns
}

// Batches become runs that are merged so that each run holds more entries
// than all newer runs together; every chunk stays findable, also after a
// reopen, and only listed runs stay on disk.
func TestChunkIndexRuns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[chunk.ID]uint64{}
	sizes := []int{100, 100, 50, 300, 7, 7, 7, 1000, 1, 2, 3}
	for b, n := range sizes {
		ids := randomIDs(n)
		addBatch(t, c, byte(b), ids)
		for i, id := range ids {
			want[id] = uint64(i) * 10
		}
		runs := c.index.current()
		for j := 0; j+1 < len(runs); j++ {
			var newer int64
			for _, r := range runs[j+1:] {
				newer += r.Len()
			}
			if runs[j].Len() <= newer {
				t.Fatalf("after batch %d: run %d holds %d entries, newer runs %d", b, j, runs[j].Len(), newer)
			}
		}
		var names []string
		for _, r := range runs {
			names = append(names, filepath.Base(r.name))
		}
		if got := runFiles(t, dir); !slices.Equal(got, names) {
			t.Fatalf("after batch %d: files %v, listed %v", b, got, names)
		}
	}
	check := func(c *cache) {
		t.Helper()
		var total int64
		for _, r := range c.index.current() {
			total += r.Len()
		}
		if total != int64(len(want)) {
			t.Fatalf("runs hold %d entries, want %d", total, len(want))
		}
		for id, off := range want {
			ref, ok := c.chunk(id)
			if !ok || ref.Offset != off || ref.ID != id {
				t.Fatalf("chunk %x: ok %v ref %+v", id[:8], ok, ref)
			}
		}
		for _, id := range randomIDs(200) {
			if _, ok := c.chunk(id); ok {
				t.Fatal("a chunk never added was found")
			}
		}
	}
	check(c)
	c = reopenCache(t, c, path)
	defer c.close()
	check(c)
}

// reopenCache closes c and opens the cache at path again.
func reopenCache(t *testing.T, c *cache, path string) *cache {
	t.Helper()
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A chunk recorded again (its pack was lost from the cache and it was
// stored anew) is found at its newest place, before and after merges.
func TestChunkIndexNewestWins(t *testing.T) {
	c, err := openCache(filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ids := randomIDs(50)
	addBatch(t, c, 1, ids)
	addBatch(t, c, 2, ids[10:20]) // a smaller run: not merged
	if n := len(c.index.current()); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
	for i, id := range ids {
		ref, _ := c.chunk(id)
		if want := byte(1 + b2i(i >= 10 && i < 20)); ref.Pack[0] != want {
			t.Fatalf("chunk %d in pack %d, want %d", i, ref.Pack[0], want)
		}
	}
	addBatch(t, c, 3, append(randomIDs(100), ids[15]))
	if n := len(c.index.current()); n != 1 {
		t.Fatalf("%d runs after a large batch, want 1 (merged)", n)
	}
	for i, id := range ids {
		ref, _ := c.chunk(id)
		want := byte(1)
		switch {
		case i == 15:
			want = 3
		case i >= 10 && i < 20:
			want = 2
		}
		if ref.Pack[0] != want {
			t.Fatalf("after merge: chunk %d in pack %d, want %d", i, ref.Pack[0], want)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A cache written before the chunk index kept chunks in a bbolt bucket:
// opening it moves them into a run and drops the bucket.
func TestChunkIndexMigratesBucket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := randomIDs(500)
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bChunks)
		if err != nil {
			return err
		}
		for i, id := range ids {
			if err := b.Put(id[:], encodeLoc([16]byte{7}, uint64(i)*3, uint64(i+1), uint64(i+2))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		ref, ok := c.chunk(id)
		if !ok || ref.Pack != [16]byte{7} || ref.Offset != uint64(i)*3 || ref.Length != uint64(i+1) || ref.RawLength != uint64(i+2) {
			t.Fatalf("chunk %d after migration: ok %v ref %+v", i, ok, ref)
		}
	}
	if runs := c.index.current(); len(runs) != 1 || runs[0].Len() != 500 {
		t.Fatalf("runs after migration: %d", len(runs))
	}
	_ = c.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bChunks) != nil {
			t.Fatal("chunks bucket still there")
		}
		return nil
	})
	c.close()

	// A malformed value fails the open with advice, and changes nothing.
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucket(bChunks)
		return b.Put(ids[0][:], []byte{1, 2, 3})
	})
	db.Close()
	if _, err := openCache(path); err == nil || !strings.Contains(err.Error(), "can be deleted") {
		t.Fatalf("open with a malformed chunks bucket: %v", err)
	}
	if got := runFiles(t, dir); len(got) != 1 {
		t.Fatalf("files after a failed migration: %v", got)
	}
}

// Run files not listed (left by a backup that stopped between writing and
// listing one) are deleted on open; a listed run that is missing or
// damaged fails the open with advice instead of answering wrongly.
func TestChunkIndexDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	ids := randomIDs(300)
	addBatch(t, c, 1, ids)
	name := c.index.current()[0].name
	if err := c.commit(1, [32]byte{}); err != nil { // saves the filter
		t.Fatal(err)
	}
	c.close()

	leftover := filepath.Join(dir, runsDir, runName(99))
	if err := os.WriteFile(leftover, []byte("half a run"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	c.close()
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover run not deleted: %v", err)
	}

	good, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	// A damaged trailer: the open fails.
	bad := slices.Clone(good)
	bad[len(bad)-1] ^= 1
	os.WriteFile(name, bad, 0o600)
	if _, err := openCache(path); err == nil || !strings.Contains(err.Error(), "can be deleted") {
		t.Fatalf("open with a damaged run: %v", err)
	}
	// A damaged block: lookups that reach it miss, and the next record or
	// commit fails and says what to do. (Without a saved filter the open
	// reads every block and fails at once.)
	bad = slices.Clone(good)
	bad[100] ^= 1
	os.WriteFile(name, bad, 0o600)
	c, err = openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c.chunk(id)
	}
	if err := c.commit(2, [32]byte{}); err == nil || !strings.Contains(err.Error(), "delete") {
		t.Fatalf("commit with a damaged run: %v", err)
	}
	if err := c.addPack(&snapshot.PackRef{ID: [16]byte{2}}, nil); err == nil {
		t.Fatal("recording into a damaged index succeeded")
	}
	c.close()
	// A listed run missing.
	os.Remove(name)
	if _, err := openCache(path); err == nil || !strings.Contains(err.Error(), "can be deleted") {
		t.Fatalf("open with a run missing: %v", err)
	}
}

// A run that cannot be written (here: its directory replaced by a file)
// fails the record and changes nothing: chunks recorded before are still
// found, and the failed batch's are not.
func TestChunkIndexWriteFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	first := randomIDs(100)
	addBatch(t, c, 1, first)
	rd := filepath.Join(dir, runsDir)
	if err := os.Rename(rd, rd+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rd, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	second := randomIDs(100)
	es := []pack.Entry{{Type: pack.BlobData, ID: second[0], Length: 1, RawLength: 1}}
	if err := c.addPack(&snapshot.PackRef{ID: [16]byte{2}}, es); err == nil {
		t.Fatal("a run that could not be written was recorded")
	}
	if c.hasPack([16]byte{2}) {
		t.Fatal("the pack was recorded without its run")
	}
	if _, ok := c.chunk(second[0]); ok {
		t.Fatal("a chunk of the failed batch is found")
	}
	for _, id := range first {
		if _, ok := c.chunk(id); !ok {
			t.Fatal("a chunk recorded before the failure is lost")
		}
	}
}

// BenchmarkCacheRecord records the chunks of a first backup of n chunks in
// batches of CacheBatch, as a backup does: the chunk index's write cost
// per chunk should stay about flat as n grows.
func BenchmarkCacheRecord(b *testing.B) {
	for _, n := range []int{256 << 10, 1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("chunks=%dKi", n>>10), func(b *testing.B) {
			ids := randomIDs(n)
			b.ReportAllocs()
			for b.Loop() {
				c, err := openCache(filepath.Join(b.TempDir(), "cache.db"))
				if err != nil {
					b.Fatal(err)
				}
				for start, p := 0, 0; start < n; p++ {
					var ps []durablePack
					for blobs := 0; blobs < CacheBatch && start < n; {
						m := min(8192, n-start)
						es := make([]pack.Entry, m)
						for i := range es {
							es[i] = pack.Entry{Type: pack.BlobData, ID: ids[start+i], Offset: uint64(i) * 100, Length: 100, RawLength: 300}
						}
						ps = append(ps, durablePack{ref: &snapshot.PackRef{ID: [16]byte{byte(p), byte(p >> 8), byte(blobs >> 13)}}, entries: es})
						start += m
						blobs += m
					}
					if err := c.addPacks(ps); err != nil {
						b.Fatal(err)
					}
				}
				if err := c.commit(1, [32]byte{}); err != nil {
					b.Fatal(err)
				}
				c.close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/chunk")
		})
	}
}

// A backup killed at any step of recording a batch leaves a cache that
// opens, holds no unlisted run file, finds every chunk of the batches
// recorded before, and holds the killed batch's chunks together with their
// pack (the transaction listing the run committed) or not at all.
func TestChunkIndexCrashPoints(t *testing.T) {
	for _, step := range []string{"run written", "run synced", "listed", "synced", "one merged run deleted"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cache.db")
			c, err := openCache(path)
			if err != nil {
				t.Fatal(err)
			}
			var before []chunk.ID
			for b, n := range []int{400, 200, 100} {
				ids := randomIDs(n)
				addBatch(t, c, byte(b), ids)
				before = append(before, ids...)
			}
			if n := len(c.index.current()); n != 3 {
				t.Fatalf("%d runs before the crash, want 3", n)
			}
			// 300 more: merges the two newest runs (200, 100) into the new one.
			killed := randomIDs(300)
			c.index.crashAt = step
			es := make([]pack.Entry, len(killed))
			for i, id := range killed {
				es[i] = pack.Entry{Type: pack.BlobData, ID: id, Length: 1, RawLength: 1}
			}
			if err := c.addPack(&snapshot.PackRef{ID: [16]byte{0xee}}, es); !errors.Is(err, errCrashed) {
				t.Fatalf("add: %v, want the crash", err)
			}
			c.close()

			c, err = openCache(path)
			if err != nil {
				t.Fatalf("open after a crash at %q: %v", step, err)
			}
			defer c.close()
			var listed []string
			for _, r := range c.index.current() {
				listed = append(listed, filepath.Base(r.name))
			}
			if got := runFiles(t, dir); !slices.Equal(got, listed) {
				t.Fatalf("files %v, listed %v", got, listed)
			}
			for _, id := range before {
				if _, ok := c.chunk(id); !ok {
					t.Fatalf("a chunk recorded before the crash is lost")
				}
			}
			var found int
			for _, id := range killed {
				if ref, ok := c.chunk(id); ok {
					found++
					if ref.Pack != [16]byte{0xee} {
						t.Fatal("a killed batch's chunk points elsewhere")
					}
				}
			}
			committed := step != "run written" && step != "run synced"
			if want := map[bool]int{true: len(killed), false: 0}[committed]; found != want || c.hasPack([16]byte{0xee}) != committed {
				t.Fatalf("crash at %q: %d of the killed batch's chunks found, pack recorded %v", step, found, c.hasPack([16]byte{0xee}))
			}
			// And the next batch records normally.
			addBatch(t, c, 0xf0, randomIDs(50))
		})
	}
}

// encodeLoc is a location's encoding in a buffer of its own.
func encodeLoc(pack [16]byte, off, length, raw uint64) []byte {
	return appendLoc(make([]byte, 0, maxLocSize), pack, off, length, raw)
}
