package agent

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/embassy-project/embassy/internal/chunkindex"
)

// randomEntries returns n entries with random IDs; with shared set, IDs
// come in groups that share their first 8 bytes (and so every prefix
// sortEntries sorts by), and some IDs repeat with another pack or offset.
func randomEntries(r *rand.Rand, n int, shared bool) []chunkindex.Entry {
	es := make([]chunkindex.Entry, n)
	for i := range es {
		e := &es[i]
		for j := 0; j < 32; j += 8 {
			binary.LittleEndian.PutUint64(e.ID[j:], r.Uint64())
		}
		binary.LittleEndian.PutUint64(e.Pack[:], r.Uint64())
		e.Offset = r.Uint64N(1 << 24)
		e.Length, e.RawLength = r.Uint32(), r.Uint32()
		if shared && i > 0 {
			switch r.IntN(4) {
			case 0: // same first 8 bytes as the one before, rest differs
				copy(e.ID[:8], es[i-1].ID[:8])
			case 1: // the same ID again, another place
				e.ID = es[i-1].ID
				if r.IntN(2) == 0 {
					e.Pack = es[i-1].Pack
				}
			}
		}
	}
	r.Shuffle(n, func(i, j int) { es[i], es[j] = es[j], es[i] })
	return es
}

func TestSortEntries(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 100, 255, 256, 257, 1000, 4096, 65536, 70001} {
		for _, shared := range []bool{false, true} {
			es := randomEntries(r, n, shared)
			want := slices.Clone(es)
			slices.SortFunc(want, compareEntries)
			sortEntries(es)
			if !slices.Equal(es, want) {
				t.Fatalf("n=%d shared=%v: sortEntries differs from a full sort", n, shared)
			}
		}
	}
	// Every ID alike in its first bytes: everything is one run of ties.
	es := randomEntries(r, 3000, false)
	for i := range es {
		copy(es[i].ID[:8], "prefix!!")
	}
	want := slices.Clone(es)
	slices.SortFunc(want, compareEntries)
	sortEntries(es)
	if !slices.Equal(es, want) {
		t.Fatal("one shared prefix: sortEntries differs from a full sort")
	}
}

// BenchmarkSortEntries sorts a cache batch of 64 Ki entries (CacheBatch):
// keyed, as addPacks does, and as a sort of the entries themselves.
func BenchmarkSortEntries(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	src := randomEntries(r, CacheBatch, false)
	es := make([]chunkindex.Entry, len(src))
	b.Run("keyed", func(b *testing.B) {
		for b.Loop() {
			copy(es, src)
			sortEntries(es)
		}
	})
	b.Run("entries", func(b *testing.B) {
		for b.Loop() {
			copy(es, src)
			// addPacks's sort before sortEntries: the first 8 bytes as a
			// number, then the rest.
			slices.SortFunc(es, func(a, b chunkindex.Entry) int {
				if c := cmp.Compare(binary.BigEndian.Uint64(a.ID[:8]), binary.BigEndian.Uint64(b.ID[:8])); c != 0 {
					return c
				}
				return compareEntries(a, b)
			})
		}
	})
}
