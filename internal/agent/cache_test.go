package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/embassy-project/embassy/internal/snapshot"
	"github.com/embassy-project/embassy/internal/tree"
	"github.com/embassy-project/embassy/internal/wire"
)

func sampleEntries() []fileEntry {
	ref := tree.Ref{ID: [32]byte{1, 2, 3}, Pack: [16]byte{9}, Offset: 17, Length: 300, RawLength: 900}
	return []fileEntry{
		{Name: "a.csv", Ino: 12, Size: 900, MTime: -5, CTime: 1 << 40, Mode: 0o644, UID: 1000, GID: 1000, Content: []tree.Ref{ref}},
		{Name: "empty", Ino: 13},
	}
}

func TestEntriesRoundTrip(t *testing.T) {
	es := sampleEntries()
	m, err := decodeEntries(encodeEntries(es))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if !reflect.DeepEqual(m[e.Name], e) {
			t.Fatalf("%s: got %+v, want %+v", e.Name, m[e.Name], e)
		}
	}
	b := encodeEntries(es)
	if cap(b) != len(b) {
		t.Errorf("encoding of %d bytes allocated %d", len(b), cap(b))
	}
	for i := range b {
		if _, err := decodeEntries(b[:i]); !errors.Is(err, wire.ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
}

func TestPackRefRoundTrip(t *testing.T) {
	p := snapshot.PackRef{ID: [16]byte{7}, Size: 1 << 24, ShardSize: 1<<23 + 48, Shards: [][32]byte{{1}, {2}, {3}}}
	got, err := decodePackRef(p.ID, encodePackRef(&p))
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// FuzzDecodeEntries: the cache's file entries decode cleanly or fail with
// ErrCorrupt; whatever decodes re-encodes to the same entries.
func FuzzDecodeEntries(f *testing.F) {
	f.Add(encodeEntries(sampleEntries()))
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeEntries(b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		es := make([]fileEntry, 0, len(m))
		for _, e := range m {
			es = append(es, e)
		}
		sort.Slice(es, func(i, j int) bool { return es[i].Name < es[j].Name })
		enc := encodeEntries(es)
		if cap(enc) != len(enc) {
			t.Fatalf("encoding of %d bytes allocated %d", len(enc), cap(enc))
		}
		m2, err := decodeEntries(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the entries: %v", err)
		}
	})
}

func FuzzDecodePackRef(f *testing.F) {
	f.Add(encodePackRef(&snapshot.PackRef{Size: 5, ShardSize: 3, Shards: [][32]byte{{1}, {2}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePackRef([16]byte{}, b)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if got, err := decodePackRef([16]byte{}, encodePackRef(&p)); err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// rssFileKB is this process's resident file-backed memory (RssFile).
func rssFileKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestDropMapped: file entries read through the memory map stop counting
// as resident once dropped, and dropping while other goroutines read and
// write (and bbolt remaps the growing file) never changes what they read.
func TestDropMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	dirEntriesFor := func(d int) []fileEntry {
		es := make([]fileEntry, 1500)
		for i := range es {
			es[i] = fileEntry{Name: fmt.Sprintf("file-%06d.json", i), Ino: uint64(d*100000 + i), Size: uint64(i), MTime: int64(d), CTime: int64(i), Mode: 0o644,
				Content: []tree.Ref{{ID: [32]byte{byte(d), byte(i)}, Pack: [16]byte{byte(i)}, Offset: uint64(i), Length: 7, RawLength: 6}}}
		}
		return es
	}
	const dirs = 300 // ~150 KB each: ~45 MB of entries
	for d := 0; d < dirs; d++ {
		if err := c.putDir(fmt.Sprintf("/src/%d", d), dirEntriesFor(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.commit(1, [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	c.close()
	c, err = openCache(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	check := func(d int) {
		got := c.dirEntries(fmt.Sprintf("/src/%d", d))
		want := dirEntriesFor(d)
		if len(got) != len(want) {
			t.Errorf("dir %d: %d entries, want %d", d, len(got), len(want))
			return
		}
		for _, w := range want {
			if g := got[w.Name]; g.Ino != w.Ino || g.Content[0] != w.Content[0] {
				t.Errorf("dir %d: entry %s read back wrong", d, w.Name)
				return
			}
		}
	}

	old := dropMappedEvery
	dropMappedEvery = 1 << 62 // only explicit drops
	defer func() { dropMappedEvery = old }()
	before := rssFileKB(t)
	for d := 0; d < dirs; d++ {
		check(d)
	}
	read := rssFileKB(t)
	c.dropMapped()
	after := rssFileKB(t)
	if read-before < 30<<10 || read-after < 30<<10 {
		t.Fatalf("RssFile %d KiB before reading, %d after reading, %d after dropping: want the ~45 MB read to go", before, read, after)
	}

	// Concurrently: readers, a dropper, and a writer growing the file
	// (so that bbolt remaps it).
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; ; i += 3 {
				select {
				case <-stop:
					return
				default:
				}
				check(i % dirs)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				c.dropMapped()
			}
		}
	}()
	for d := dirs; d < dirs+200; d++ {
		if err := c.putDir(fmt.Sprintf("/src/%d", d), dirEntriesFor(d)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
