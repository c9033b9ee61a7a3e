package chunkindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/chunkindex/run.cidx")

// entries returns n entries with IDs derived from seed, sorted.
func entries(seed string, n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i].ID = sha256.Sum256([]byte(seed + "/" + string(binary.BigEndian.AppendUint32(nil, uint32(i)))))
		p := sha256.Sum256(es[i].ID[:])
		copy(es[i].Pack[:], p[:])
		es[i].Offset = uint64(i) * 70_000
		es[i].Length = uint32(i%5000 + 1)
		es[i].RawLength = uint32(i%7000 + 1)
	}
	slices.SortFunc(es, func(a, b Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return es
}

func write(t testing.TB, es []Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewWriter(&b)
	for i := range es {
		if err := w.Add(&es[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func open(t testing.TB, b []byte) *Run {
	t.Helper()
	r, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func all(r *Run) ([]Entry, error) {
	var es []Entry
	it := r.Iter()
	var e Entry
	for it.Next(&e) {
		es = append(es, e)
	}
	return es, it.Err()
}

func TestGolden(t *testing.T) {
	// 130 entries: two full blocks and one of two records.
	es := entries("golden", 130)
	got := write(t, es)
	path := filepath.Join("..", "..", "testdata", "chunkindex", "run.cidx")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("writer output differs from %s (run with -update after reviewing the format change)", path)
	}
	if int64(len(want)) != Size(130) || Size(130) != 130*64+3*12+24 {
		t.Fatalf("size %d, Size(130) %d", len(want), Size(130))
	}
	r := open(t, want)
	back, err := all(r)
	if err != nil || !slices.Equal(back, es) {
		t.Fatalf("iterated %d entries (err %v), want %d equal", len(back), err, len(es))
	}
}

func TestLookup(t *testing.T) {
	for _, n := range []int{1, 63, 64, 65, 1000, 20_000} {
		es := entries("lookup", n)
		r := open(t, write(t, es))
		if r.Len() != int64(n) {
			t.Fatalf("Len %d, want %d", r.Len(), n)
		}
		for i := range es {
			var e Entry
			ok, err := r.Lookup(&es[i].ID, &e)
			if err != nil || !ok || e != es[i] {
				t.Fatalf("n=%d: lookup %d: ok %v err %v", n, i, ok, err)
			}
		}
		for _, miss := range entries("absent", 500) {
			var e Entry
			if ok, err := r.Lookup(&miss.ID, &e); ok || err != nil {
				t.Fatalf("n=%d: absent ID found (ok %v, err %v)", n, ok, err)
			}
		}
		// Just below and above every present ID.
		for i := range es {
			for _, d := range []int{-1, 1} {
				id := es[i].ID
				id[31] += byte(d)
				if _, ok := slices.BinarySearchFunc(es, id, func(e Entry, id [32]byte) int { return bytes.Compare(e.ID[:], id[:]) }); ok {
					continue
				}
				var e Entry
				if ok, err := r.Lookup(&id, &e); ok || err != nil {
					t.Fatalf("n=%d: neighbour of %d found (ok %v, err %v)", n, i, ok, err)
				}
			}
		}
	}
}

// IDs sharing their first 8 bytes across block boundaries are still found.
func TestLookupEqualPrefixes(t *testing.T) {
	es := entries("prefix", 300)
	for i := 60; i < 200; i++ {
		copy(es[i].ID[:8], es[60].ID[:8])
	}
	slices.SortFunc(es, func(a, b Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	r := open(t, write(t, es))
	for i := range es {
		var e Entry
		if ok, err := r.Lookup(&es[i].ID, &e); !ok || err != nil || e != es[i] {
			t.Fatalf("lookup %d: ok %v err %v", i, ok, err)
		}
	}
}

func TestWriterRejects(t *testing.T) {
	es := entries("rej", 3)
	w := NewWriter(&bytes.Buffer{})
	if err := w.Add(&es[1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&es[0]); err == nil {
		t.Fatal("an entry out of order was accepted")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed Add succeeded")
	}
	w = NewWriter(&bytes.Buffer{})
	if err := w.Add(&es[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&es[0]); err == nil {
		t.Fatal("a repeated ID was accepted")
	}
	if err := NewWriter(&bytes.Buffer{}).Close(); err == nil {
		t.Fatal("an empty run was written")
	}
}

// Every single byte flipped is caught: by Open, or by reading the block.
func TestByteFlips(t *testing.T) {
	good := write(t, entries("flip", 130))
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		r, err := Open(bytes.NewReader(b), int64(len(b)))
		if err == nil {
			_, err = all(r)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at byte %d of %d: err %v, want ErrCorrupt", i, len(b), err)
		}
	}
	for _, n := range []int{0, 1, TrailerSize, len(good) - 1, len(good) - RecordSize} {
		if _, err := Open(bytes.NewReader(good[:n]), int64(n)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err %v, want ErrCorrupt", n, err)
		}
	}
}

// A lookup that reads a damaged block says so instead of answering.
func TestLookupCorruptBlock(t *testing.T) {
	es := entries("lcb", 200)
	b := write(t, es)
	b[BlockSize+100] ^= 1 // block 1
	r := open(t, b)
	var e Entry
	var sawErr bool
	for i := range es {
		ok, err := r.Lookup(&es[i].ID, &e)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			sawErr = true
			continue
		}
		if !ok || e != es[i] {
			t.Fatalf("lookup %d answered wrongly", i)
		}
	}
	if !sawErr {
		t.Fatal("no lookup reported the damaged block")
	}
}

func TestMerge(t *testing.T) {
	old := entries("m", 1000)
	newer := entries("n", 300)
	// 100 IDs of old again, with other locations: the newer wins.
	for i := 0; i < 100; i++ {
		e := old[i*7]
		e.Offset++
		newer = append(newer, e)
	}
	slices.SortFunc(newer, func(a, b Entry) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	r1 := open(t, write(t, old))
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := Merge(w, r1.Iter(), SliceSource(newer)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := all(open(t, b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[[32]byte]Entry{}
	for _, e := range old {
		want[e.ID] = e
	}
	for _, e := range newer {
		want[e.ID] = e
	}
	if len(got) != len(want) {
		t.Fatalf("merged %d entries, want %d", len(got), len(want))
	}
	for _, e := range got {
		if want[e.ID] != e {
			t.Fatalf("entry %x: got %+v, want %+v", e.ID[:4], e, want[e.ID])
		}
	}
	// A damaged source fails the merge.
	bad := write(t, old)
	bad[500] ^= 1
	w = NewWriter(&bytes.Buffer{})
	if err := Merge(w, open(t, bad).Iter(), SliceSource(newer)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("merge of a damaged run: %v, want ErrCorrupt", err)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(write(f, entries("f", 1)))
	f.Add(write(f, entries("f", 65)))
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "chunkindex", "run.cidx")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		es, err := all(r)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		// A run that reads whole is what the writer writes for its entries.
		if got := write(t, es); !bytes.Equal(got, b) {
			t.Fatal("a run that parses does not re-encode to itself")
		}
		for i := range es {
			var e Entry
			if ok, err := r.Lookup(&es[i].ID, &e); !ok || err != nil || e != es[i] {
				t.Fatalf("entry %d not found by lookup (ok %v, err %v)", i, ok, err)
			}
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	es := entries("bench", 1<<20)
	r := open(b, write(b, es))
	b.ReportAllocs()
	b.ResetTimer()
	var e Entry
	for i := 0; b.Loop(); i++ {
		if ok, _ := r.Lookup(&es[i%len(es)].ID, &e); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	old := write(b, entries("a", 1<<20))
	newer := entries("b", 128<<10)
	r := open(b, old)
	b.SetBytes(int64(len(old)))
	b.ReportAllocs()
	for b.Loop() {
		var out bytes.Buffer
		out.Grow(len(old) + len(newer)*RecordSize*2)
		w := NewWriter(&out)
		if err := Merge(w, r.Iter(), SliceSource(newer)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
