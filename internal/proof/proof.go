package proof

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"sort"

	"github.com/zeebo/blake3"
	"lukechampine.com/blake3/bao"

	"github.com/embassy-project/embassy/internal/shardstore"
)

// Group is the Bao chunk-group exponent: the tree's leaves are 2^Group BLAKE3
// chunks of 1 KiB, i.e. 16 KiB. With 1 KiB leaves (plain Bao) the outboard
// would cost 6.25% of every shard and each proof would carry 10 more hashes
// per path; with 16 KiB leaves the outboard is 64 bytes per 16 KiB (0.39%)
// and a proof item is one disk read of 16 KiB, which is about what a seek
// costs anyway. Larger groups would make every audit item dearer to send.
// The root does not depend on the group: it is always BLAKE3-256.
const Group = 4

// GroupSize is the size of one leaf: 16 KiB. Every shard but the empty one has
// ceil(size / GroupSize) leaves; the last may be short.
const GroupSize = 1024 << Group

// maxDepth is the deepest a leaf can sit in the tree of a shard smaller than
// 2^63 bytes: at most 2^49 leaves, so at most 49 parents on a path.
const maxDepth = 63 - 10 - Group

// Outboard returns the Bao outboard encoding of shard with chunk groups of
// 2^Group chunks: an 8-byte little-endian length followed by the tree's
// parent nodes (two 32-byte chaining values each) in pre-order. A host
// computes it once when it stores the shard and keeps it beside the shard;
// its length is OutboardSize(len(shard)).
func Outboard(shard []byte) []byte {
	ob, _ := bao.EncodeBuf(shard, Group, true)
	return ob
}

// OutboardSum returns Outboard(shard) and the shard's address, computed in
// the same pass: Bao's root is the BLAKE3-256 hash of the content, which
// shardstore.Sum computes. A host checks an upload against its address and
// keeps its outboard with one pass over the bytes instead of two.
func OutboardSum(shard []byte) ([]byte, shardstore.ID) {
	ob, root := bao.EncodeBuf(shard, Group, true)
	return ob, shardstore.ID(root)
}

// OutboardSize returns the length of the outboard encoding of an n-byte
// shard: 8 + 64 × (leaves − 1), about n/256.
func OutboardSize(n int) int { return bao.EncodedSize(n, Group, true) }

// Shard is one shard a host is supposed to hold: its address and size.
type Shard struct {
	ID   shardstore.ID
	Size int64
}

// Item is one piece a challenge asks for: the leaf of shard Shard that starts
// at Offset (a multiple of GroupSize) and is Length bytes long (GroupSize, or
// less for a shard's last leaf).
type Item struct {
	Shard  shardstore.ID
	Offset int64
	Length int
}

// sampleContext is hashed under the nonce to make the sample's random stream.
const sampleContext = "embassy v1 proof sample"

// leaves returns the number of GroupSize leaves in a shard of size bytes; an
// empty shard has none (there is nothing to prove about it).
func leaves(size int64) uint64 {
	if size <= 0 {
		return 0
	}
	return uint64(size-1)/GroupSize + 1
}

// canonicalShards returns shards sorted by (ID, Size) with exact duplicates
// and empty shards dropped: the order Sample numbers leaves in.
func canonicalShards(shards []Shard) []Shard {
	list := make([]Shard, 0, len(shards))
	for _, s := range shards {
		if s.Size > 0 {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(a, b Shard) int {
		if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Size, b.Size)
	})
	return slices.Compact(list)
}

// Sample picks m leaves, independently and uniformly (with replacement) over
// all leaves of all the given shards, so a shard's chance of being sampled is
// proportional to its size. It is deterministic from nonce and the set of
// shards (their order does not matter; exact duplicates count once, empty
// shards never appear): anyone holding both can recompute it.
//
// The random stream is the extended output of keyed BLAKE3 (key nonce, input
// "embassy v1 proof sample"), read as big-endian uint64 words; a word x is
// rejected if x < 2^64 mod N (N = total leaves), else it names leaf x mod N,
// which keeps the choice exactly uniform. It returns nil if m ≤ 0 or there is
// no leaf. docs/spec/proof.md gives the algorithm in full.
func Sample(nonce [32]byte, shards []Shard, m int) []Item {
	list := canonicalShards(shards)
	cum := make([]uint64, len(list)+1) // cum[i] = leaves before shard i
	for i, s := range list {
		cum[i+1] = cum[i] + leaves(s.Size)
	}
	total := cum[len(list)]
	if m <= 0 || total == 0 {
		return nil
	}
	h, err := blake3.NewKeyed(nonce[:])
	if err != nil {
		panic(err) // the key is 32 bytes by type
	}
	_, _ = h.WriteString(sampleContext)
	xof := h.Digest()
	reject := -total % total // 2^64 mod total
	items := make([]Item, 0, m)
	var word [8]byte
	for len(items) < m {
		_, _ = xof.Read(word[:])
		x := binary.BigEndian.Uint64(word[:])
		if x < reject {
			continue
		}
		p := x % total
		i := sort.Search(len(list), func(i int) bool { return cum[i+1] > p })
		off := int64(p-cum[i]) * GroupSize
		items = append(items, Item{Shard: list[i].ID, Offset: off, Length: int(min(GroupSize, list[i].Size-off))})
	}
	return items
}

// Required returns the number of items a challenge needs so that a host which
// lost a fraction loss of its bytes (0 < loss < 1) is caught with probability
// at least confidence (0 < confidence < 1): the smallest m with
// (1 − loss)^m ≤ 1 − confidence. Required(0.01, 0.9999) is 917.
func Required(loss, confidence float64) (int, error) {
	if !(loss > 0 && loss < 1) {
		return 0, errors.New("proof: loss must be in (0, 1)")
	}
	if !(confidence > 0 && confidence < 1) {
		return 0, errors.New("proof: confidence must be in (0, 1)")
	}
	target := math.Log1p(-confidence)
	step := math.Log1p(-loss)
	mf := math.Ceil(target / step)
	if mf > math.MaxInt32 {
		return 0, errors.New("proof: loss too small to detect with a sample")
	}
	m := max(int(mf), 1)
	// Settle floating-point rounding at the boundary with the exact rule.
	for m > 1 && float64(m-1)*step <= target {
		m--
	}
	for float64(m)*step > target {
		m++
	}
	return m, nil
}

// Confidence returns the probability that m independent items catch a host
// that lost a fraction loss of its bytes: 1 − (1 − loss)^m. It returns NaN if
// loss is outside [0, 1] or m is negative.
func Confidence(loss float64, m int) float64 {
	if !(loss >= 0 && loss <= 1) || m < 0 {
		return math.NaN()
	}
	if m == 0 {
		return 0
	}
	return -math.Expm1(float64(m) * math.Log1p(-loss))
}
