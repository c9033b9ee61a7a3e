package agent

import (
	"errors"
	"reflect"
	"sort"
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
		m2, err := decodeEntries(encodeEntries(es))
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
