package agent

import (
	"crypto/rand"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/pack"
	"github.com/embassy-project/embassy/internal/snapshot"
)

func randomIDs(n int) []chunk.ID {
	ids := make([]chunk.ID, n)
	for i := range ids {
		rand.Read(ids[i][:])
	}
	return ids
}

// TestFilterNoFalseNegatives: every added ID is reported; IDs never added
// are reported at about the designed rate (~1 % at the limit).
func TestFilterNoFalseNegatives(t *testing.T) {
	f := newFilter(0)
	ids := randomIDs(int(f.limit))
	for _, id := range ids {
		f.add(id[:])
	}
	for _, id := range ids {
		if !f.has(id[:]) {
			t.Fatalf("added ID %x not found", id[:8])
		}
	}
	if f.full() {
		t.Fatal("full at its limit")
	}
	fp := 0
	others := randomIDs(100000)
	for _, id := range others {
		if f.has(id[:]) {
			fp++
		}
	}
	if rate := float64(fp) / float64(len(others)); rate > 0.02 {
		t.Fatalf("false-positive rate %.3f at the limit, want ~0.01", rate)
	}
	f.add(others[0][:])
	if !f.full() {
		t.Fatal("not full past its limit")
	}
}

// TestCacheFilterGrows: a cache whose filter fills up rebuilds a larger one
// from the database, and every chunk stays findable; a reopened cache
// rebuilds it from disk.
func TestCacheFilterGrows(t *testing.T) {
	old := filterMinBits
	filterMinBits = 1 << 10 // room for ~100 IDs
	defer func() { filterMinBits = old }()
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	first := c.chunks.Load()
	var all []chunk.ID
	for p := 0; p < 8; p++ {
		ids := randomIDs(60)
		var es []pack.Entry
		for i, id := range ids {
			es = append(es, pack.Entry{Type: pack.BlobData, ID: id, Offset: uint64(i), Length: 1, RawLength: 1})
		}
		if err := c.addPack(&snapshot.PackRef{ID: [16]byte{byte(p)}}, es); err != nil {
			t.Fatal(err)
		}
		all = append(all, ids...)
	}
	if c.chunks.Load() == first || c.chunks.Load().full() {
		t.Fatal("the filter did not grow")
	}
	check := func(c *cache) {
		t.Helper()
		for _, id := range all {
			if _, ok := c.chunk(id); !ok {
				t.Fatalf("chunk %x lost", id[:8])
			}
		}
		for _, id := range randomIDs(100) {
			if _, ok := c.chunk(id); ok {
				t.Fatalf("chunk %x found but never added", id[:8])
			}
		}
	}
	check(c)
	c = reopenCache(t, c, path)
	defer c.close()
	if c.chunks.Load().count.Load() != int64(len(all)) {
		t.Fatalf("reopened filter holds %d IDs, want %d", c.chunks.Load().count.Load(), len(all))
	}
	check(c)

	// A committed backup saves the filter; the next open loads it instead
	// of reading the whole index, and adding chunks drops the saved copy
	// until the next commit.
	if err := c.commit(1, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	saved := c.chunks.Load().marshal()
	c.close()
	c, err = openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.chunks.Load().marshal(); string(got) != string(saved) {
		t.Fatal("the saved filter did not load as saved")
	}
	check(c)
	more := randomIDs(5)
	var es []pack.Entry
	for i, id := range more {
		es = append(es, pack.Entry{Type: pack.BlobData, ID: id, Offset: uint64(i), Length: 1, RawLength: 1})
	}
	if err := c.addPack(&snapshot.PackRef{ID: [16]byte{99}}, es); err != nil {
		t.Fatal(err)
	}
	c.close() // no commit: as if the backup had crashed
	c, err = openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	all = append(all, more...)
	if c.chunks.Load().count.Load() != int64(len(all)) {
		t.Fatalf("after an unfinished backup the filter holds %d IDs, want %d (rebuilt)", c.chunks.Load().count.Load(), len(all))
	}
	check(c)
}

func TestFilterEncoding(t *testing.T) {
	f := newFilter(0)
	for _, id := range randomIDs(1000) {
		f.add(id[:])
	}
	g, err := unmarshalFilter(f.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if string(g.marshal()) != string(f.marshal()) || g.limit != f.limit || g.mask != f.mask {
		t.Fatal("round trip differs")
	}
	b := f.marshal()
	for _, bad := range [][]byte{nil, b[:15], b[:len(b)-1], append(b, 0), {0, 0, 0, 0, 0, 0, 0, 63, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := unmarshalFilter(bad); err == nil {
			t.Errorf("accepted %d bytes", len(bad))
		}
	}
}

func FuzzUnmarshalFilter(f *testing.F) {
	small := &filter{bits: make([]atomic.Uint64, 2), mask: 127, limit: 12}
	small.add(make([]byte, 32))
	f.Add(small.marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := unmarshalFilter(b)
		if err != nil {
			return
		}
		if string(g.marshal()) != string(b) {
			t.Fatal("accepted input does not re-encode to itself")
		}
		g.has(make([]byte, 32)) // must not panic
	})
}
