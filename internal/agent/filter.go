package agent

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync/atomic"
)

// filter is a Bloom filter over the chunk IDs in the cache, so that the
// lookup of a chunk the cache cannot hold (on a first backup, every chunk)
// costs a few memory reads instead of reading a block of every run of the
// chunk index (~1–2 µs a run).
// It may answer "maybe" for an absent ID, then the cache is read; it never
// answers "no" for an ID the cache holds, because every ID is added before
// the transaction listing its run commits. Chunk IDs are keyed BLAKE3 outputs,
// uniformly distributed, so their bytes are used as the hashes directly.
//
// Safe for concurrent use: bits are set and read atomically.
type filter struct {
	bits  []atomic.Uint64
	mask  uint64 // number of bits - 1 (a power of two)
	count atomic.Int64
	limit int64 // past this many IDs the false-positive rate exceeds ~1 %
}

const (
	filterProbes = 7
	// filterBitsPerID: at 10 bits per ID and 7 probes, ~1 % false positives.
	filterBitsPerID = 10
)

// filterMinBits is the smallest filter, 1 MiB (a variable for tests).
var filterMinBits int64 = 1 << 23

// newFilter returns an empty filter with room for n IDs at ~0.1 % false
// positives (twice the room of its limit).
func newFilter(n int64) *filter {
	m := uint64(max(2*n*filterBitsPerID, filterMinBits))
	m = 1 << bits.Len64(m-1) // round up to a power of two
	return &filter{bits: make([]atomic.Uint64, m/64), mask: m - 1, limit: int64(m / filterBitsPerID)}
}

func probes(id []byte) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(id[0:8]), binary.LittleEndian.Uint64(id[8:16]) | 1
}

func (f *filter) add(id []byte) {
	h1, h2 := probes(id)
	for i := uint64(0); i < filterProbes; i++ {
		b := (h1 + i*h2) & f.mask
		w := &f.bits[b/64]
		if m := uint64(1) << (b % 64); w.Load()&m == 0 {
			w.Or(m)
		}
	}
	f.count.Add(1)
}

// has reports whether id may have been added.
func (f *filter) has(id []byte) bool {
	h1, h2 := probes(id)
	for i := uint64(0); i < filterProbes; i++ {
		b := (h1 + i*h2) & f.mask
		if f.bits[b/64].Load()&(uint64(1)<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// full reports whether the filter holds more IDs than it was sized for.
func (f *filter) full() bool { return f.count.Load() > f.limit }

// Encoding of a filter in the cache (docs/spec/home.md, meta/chunkfilter):
// uint64 number of bits m (a power of two, ≥ 64) ‖ uint64 IDs added ‖
// m/64 × uint64 words, all big-endian; bit b is bit b%64 of word b/64.
func (f *filter) marshal() []byte {
	out := make([]byte, 16, 16+8*len(f.bits))
	binary.BigEndian.PutUint64(out, f.mask+1)
	binary.BigEndian.PutUint64(out[8:], uint64(f.count.Load()))
	for i := range f.bits {
		out = binary.BigEndian.AppendUint64(out, f.bits[i].Load())
	}
	return out
}

func unmarshalFilter(b []byte) (*filter, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("chunk filter: %d bytes", len(b))
	}
	m, n := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	if m < 64 || m&(m-1) != 0 || m/64 > 1<<32 || uint64(len(b)-16) != m/8 || n > 1<<62 {
		return nil, fmt.Errorf("chunk filter: %d bits, %d bytes", m, len(b))
	}
	f := &filter{bits: make([]atomic.Uint64, m/64), mask: m - 1, limit: int64(m / filterBitsPerID)}
	for i := range f.bits {
		f.bits[i].Store(binary.BigEndian.Uint64(b[16+8*i:]))
	}
	f.count.Store(int64(n))
	return f, nil
}
