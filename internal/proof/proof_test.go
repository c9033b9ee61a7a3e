package proof

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	zeebo "github.com/zeebo/blake3"
	"lukechampine.com/blake3/bao"

	"github.com/embassy-project/embassy/internal/shardstore"
	"github.com/embassy-project/embassy/internal/testenv"
)

// sizes every round-trip test covers: empty, sub-chunk, chunk and group
// boundaries, and a multi-level tree with a short last leaf.
var testSizes = []int{0, 1, 1023, 1024, 16383, 16384, 16385, 3<<20 + 7}

func TestOutboardRootIsAddress(t *testing.T) {
	for _, n := range append(testSizes, 32768, 49152, 1<<20) {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := testenv.RandBytes(byte(n), n)
			ob, root := bao.EncodeBuf(data, Group, true)
			if root != zeebo.Sum256(data) || shardstore.ID(root) != shardstore.Sum(data) {
				t.Fatal("bao root differs from BLAKE3-256 (shardstore.Sum)")
			}
			if got := Outboard(data); !bytes.Equal(got, ob) {
				t.Fatal("Outboard differs from bao.EncodeBuf")
			}
			if len(ob) != OutboardSize(n) {
				t.Fatalf("len(Outboard) = %d, OutboardSize = %d", len(ob), OutboardSize(n))
			}
			if want := 8 + 64*max(int(leaves(int64(n)))-1, 0); len(ob) != want {
				t.Fatalf("outboard of %d bytes is %d bytes, want %d", n, len(ob), want)
			}
			if binary.LittleEndian.Uint64(ob) != uint64(n) {
				t.Fatal("outboard header is not the little-endian length")
			}
			if !bao.VerifyBuf(data, ob, Group, root) {
				t.Fatal("outboard does not verify")
			}
		})
	}
	// The overhead the docs promise: 64 bytes per 16 KiB, under 0.4%.
	if r := float64(OutboardSize(16<<20)) / (16 << 20); r > 0.004 {
		t.Fatalf("outboard overhead %.4f%%", 100*r)
	}
}

func TestRequired(t *testing.T) {
	for _, tc := range []struct {
		loss, conf float64
		want       int
	}{
		{0.01, 0.9999, 917},
		{0.01, 0.99, 459},
		{0.5, 0.5, 1},
		{0.5, 0.75, 2},  // exactly on the boundary: 0.5^2 = 0.25
		{0.5, 0.875, 3}, // 0.5^3 = 0.125
		{0.1, 0.9, 22},  // 0.9^22 = 0.0985
		{0.001, 0.99, 4603},
	} {
		m, err := Required(tc.loss, tc.conf)
		if err != nil || m != tc.want {
			t.Errorf("Required(%v, %v) = %d, %v; want %d", tc.loss, tc.conf, m, err, tc.want)
			continue
		}
		// Smallest: m reaches the confidence and m−1 does not.
		if math.Pow(1-tc.loss, float64(m)) > 1-tc.conf+1e-15 {
			t.Errorf("Required(%v, %v) = %d falls short", tc.loss, tc.conf, m)
		}
		if m > 1 && math.Pow(1-tc.loss, float64(m-1)) <= 1-tc.conf-1e-15 {
			t.Errorf("Required(%v, %v) = %d is not the smallest", tc.loss, tc.conf, m)
		}
		if c := Confidence(tc.loss, m); c < tc.conf-1e-12 {
			t.Errorf("Confidence(%v, %d) = %v < %v", tc.loss, m, c, tc.conf)
		}
	}
	for _, bad := range [][2]float64{{0, 0.9}, {1, 0.9}, {-0.1, 0.9}, {math.NaN(), 0.9}, {0.01, 0}, {0.01, 1}, {0.01, math.NaN()}, {1e-300, 0.99}} {
		if m, err := Required(bad[0], bad[1]); err == nil {
			t.Errorf("Required(%v, %v) = %d, want an error", bad[0], bad[1], m)
		}
	}
}

func TestConfidence(t *testing.T) {
	if c := Confidence(0.01, 917); math.Abs(c-0.99990) > 1e-5 {
		t.Fatalf("Confidence(0.01, 917) = %v", c)
	}
	if c := Confidence(0.01, 0); c != 0 {
		t.Fatalf("Confidence with no items = %v", c)
	}
	if c := Confidence(1, 1); c != 1 {
		t.Fatalf("Confidence(1, 1) = %v", c)
	}
	if c := Confidence(0, 100); c != 0 {
		t.Fatalf("Confidence(0, 100) = %v", c)
	}
	for _, bad := range []struct {
		loss float64
		m    int
	}{{-0.5, 1}, {1.5, 1}, {math.NaN(), 1}, {0.1, -1}} {
		if c := Confidence(bad.loss, bad.m); !math.IsNaN(c) {
			t.Errorf("Confidence(%v, %d) = %v, want NaN", bad.loss, bad.m, c)
		}
	}
}

func id(b byte) shardstore.ID { return shardstore.ID{b, 0xee, b} }

func TestSampleDeterministicAndCanonical(t *testing.T) {
	shards := []Shard{{id(3), 100000}, {id(1), 5 << 20}, {id(2), 1}, {id(9), 0}}
	nonce := [32]byte{7}
	a := Sample(nonce, shards, 500)
	if len(a) != 500 {
		t.Fatalf("%d items", len(a))
	}
	if b := Sample(nonce, shards, 500); !slices.Equal(a, b) {
		t.Fatal("same nonce, different sample")
	}
	// Order and exact duplicates do not matter.
	shuffled := []Shard{shards[3], shards[2], shards[0], shards[1], shards[0]}
	if b := Sample(nonce, shuffled, 500); !slices.Equal(a, b) {
		t.Fatal("sample depends on shard order or duplicates")
	}
	// A prefix of a longer sample is the shorter sample.
	if b := Sample(nonce, shards, 100); !slices.Equal(a[:100], b) {
		t.Fatal("the first 100 of 500 are not the sample of 100")
	}
	if b := Sample([32]byte{8}, shards, 500); slices.Equal(a, b) {
		t.Fatal("different nonce, same sample")
	}
	sizes := map[shardstore.ID]int64{}
	for _, s := range shards {
		sizes[s.ID] = s.Size
	}
	for _, it := range a {
		size := sizes[it.Shard]
		if it.Shard == id(9) || it.Offset%GroupSize != 0 || it.Offset >= size || int64(it.Length) != min(GroupSize, size-it.Offset) {
			t.Fatalf("bad item %+v (shard size %d)", it, size)
		}
	}
	for _, m := range []int{0, -1} {
		if got := Sample(nonce, shards, m); got != nil {
			t.Fatalf("Sample(m=%d) = %v", m, got)
		}
	}
	if got := Sample(nonce, []Shard{{id(1), 0}}, 10); got != nil {
		t.Fatal("sampled an empty shard")
	}
	if got := Sample(nonce, nil, 10); got != nil {
		t.Fatal("sampled nothing")
	}
	c := &Challenge{Nonce: nonce, Items: a}
	if !c.Fair(shuffled) {
		t.Fatal("Fair rejects the sample")
	}
	c.Items = slices.Clone(a)
	c.Items[42] = Item{id(1), 0, GroupSize}
	if c.Items[42] != a[42] && c.Fair(shards) {
		t.Fatal("Fair accepts a hand-picked item")
	}
	if (&Challenge{Nonce: nonce, Items: a}).Fair(shards[:2]) {
		t.Fatal("Fair accepts a sample over other shards")
	}
}

// TestSampleUniformByBytes checks that every leaf of every shard is about
// equally likely, so big shards are sampled in proportion to their size.
func TestSampleUniformByBytes(t *testing.T) {
	shards := []Shard{
		{id(1), 1},                // 1 leaf
		{id(2), 5 * GroupSize},    // 5
		{id(3), 20*GroupSize + 1}, // 21
		{id(4), 70*GroupSize - 5}, // 70
		{id(5), 0},                // none
	}
	const perLeaf = 400
	leafIndex := map[Item]int{}
	var perShard []int
	for _, s := range canonicalShards(shards) {
		for g := range int(leaves(s.Size)) {
			off := int64(g) * GroupSize
			leafIndex[Item{s.ID, off, int(min(GroupSize, s.Size-off))}] = len(leafIndex)
		}
		perShard = append(perShard, int(leaves(s.Size)))
	}
	n := len(leafIndex) // 97
	counts := make([]float64, n)
	for _, it := range Sample([32]byte{1, 2, 3}, shards, n*perLeaf) {
		i, ok := leafIndex[it]
		if !ok {
			t.Fatalf("item %+v is not a leaf", it)
		}
		counts[i]++
	}
	chi := 0.0
	for _, c := range counts {
		chi += (c - perLeaf) * (c - perLeaf) / perLeaf
	}
	// 96 degrees of freedom: mean 96, sd 13.9; 170 is p < 1e-6.
	if chi > 170 {
		t.Fatalf("chi-square over %d leaves = %.1f", n, chi)
	}
	// By shard: counts proportional to leaves, not equal per shard.
	chi, first := 0.0, 0
	for _, l := range perShard {
		got := 0.0
		for _, c := range counts[first : first+l] {
			got += c
		}
		want := float64(l * perLeaf)
		chi += (got - want) * (got - want) / want
		first += l
	}
	if chi > 30 { // 3 degrees of freedom
		t.Fatalf("chi-square over shards = %.1f", chi)
	}
}

// specSample is Sample written again from docs/spec/proof.md, as plainly as
// possible, with the rejection bound computed in big integers. It also counts
// rejected words.
func specSample(nonce [32]byte, shards []Shard, m int) (items []Item, rejected int) {
	list := slices.Clone(shards)
	slices.SortFunc(list, func(a, b Shard) int {
		if c := bytes.Compare(a.ID[:], b.ID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Size, b.Size)
	})
	var kept []Shard
	for _, s := range list {
		if s.Size > 0 && (len(kept) == 0 || kept[len(kept)-1] != s) {
			kept = append(kept, s)
		}
	}
	n := new(big.Int)
	var ls []*big.Int // leaves per shard
	for _, s := range kept {
		ls = append(ls, big.NewInt((s.Size-1)/GroupSize+1))
		n.Add(n, ls[len(ls)-1])
	}
	if m <= 0 || n.Sign() == 0 {
		return nil, 0
	}
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	bound := new(big.Int).Mod(two64, n)
	h, _ := zeebo.NewKeyed(nonce[:])
	h.Write([]byte("embassy v1 proof sample"))
	xof := h.Digest()
	for len(items) < m {
		var w [8]byte
		xof.Read(w[:])
		x := new(big.Int).SetUint64(binary.BigEndian.Uint64(w[:]))
		if x.Cmp(bound) < 0 {
			rejected++
			continue
		}
		p := new(big.Int).Mod(x, n)
		for i, s := range kept {
			l := ls[i]
			if p.Cmp(l) < 0 {
				off := p.Int64() * GroupSize
				items = append(items, Item{s.ID, off, int(min(GroupSize, s.Size-off))})
				break
			}
			p.Sub(p, l)
		}
	}
	return items, rejected
}

func TestSampleMatchesSpec(t *testing.T) {
	small := []Shard{{id(5), 3<<20 + 7}, {id(1), 1}, {id(3), 40000}, {id(3), 40000}, {id(2), 0}}
	// 24576 shards of 2^49 leaves: N = 3·2^62 leaves, so 2^64 mod N = 2^62
	// and a quarter of all words are rejected.
	var huge []Shard
	for i := range 3 << 13 {
		var sid shardstore.ID
		binary.BigEndian.PutUint32(sid[:], uint32(i)*2654435761)
		huge = append(huge, Shard{sid, math.MaxInt64})
	}
	for name, shards := range map[string][]Shard{"small": small, "huge": huge} {
		for seed := range byte(4) {
			nonce := [32]byte{seed, 0x55}
			want, rejected := specSample(nonce, shards, 300)
			if got := Sample(nonce, shards, 300); !slices.Equal(got, want) {
				t.Fatalf("%s, nonce %d: Sample differs from the spec algorithm", name, seed)
			}
			if name == "huge" && rejected == 0 {
				t.Fatalf("huge: no word rejected in %d draws (expected about 1 in 4)", 300+rejected)
			}
		}
	}
}

// TestDetectOnePercentLoss simulates hosts that lost 1% of their leaves and
// checks that a sample of Required(0.01, 0.9999) items catches them, while a
// sample of 10 catches about 1 − 0.99^10 ≈ 9.6% (so the simulation can tell).
func TestDetectOnePercentLoss(t *testing.T) {
	m, err := Required(0.01, 0.9999)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewChaCha8([32]byte{'l', 'o', 's', 's'}))
	var shards []Shard
	for i := range 50 {
		shards = append(shards, Shard{id(byte(i)), 1 + rng.Int64N(200*GroupSize)})
	}
	var all []Item
	for _, s := range canonicalShards(shards) {
		for g := range int64(leaves(s.Size)) {
			all = append(all, Item{s.ID, g * GroupSize, int(min(GroupSize, s.Size-g*GroupSize))})
		}
	}
	lose := (len(all) + 99) / 100
	const trials = 200
	caught := func(m int) int {
		n := 0
		for range trials {
			lost := map[Item]bool{}
			for _, i := range rng.Perm(len(all))[:lose] {
				lost[all[i]] = true
			}
			var nonce [32]byte
			for i := range nonce {
				nonce[i] = byte(rng.Uint32())
			}
			for _, it := range Sample(nonce, shards, m) {
				if lost[it] {
					n++
					break
				}
			}
		}
		return n
	}
	if got := caught(m); got != trials {
		t.Fatalf("m = %d caught %d of %d hosts that lost 1%% (%d of %d leaves)", m, got, trials, lose, len(all))
	}
	if got := caught(10); got < 6 || got > 36 {
		t.Fatalf("m = 10 caught %d of %d; expected about %.0f", got, trials, trials*Confidence(float64(lose)/float64(len(all)), 10))
	}
}

// TestOutboardSum: the outboard's root is the shard's address, so one pass
// gives both; and the outboard is Outboard's.
func TestOutboardSum(t *testing.T) {
	for _, n := range []int{0, 1, 1023, 1024, GroupSize - 1, GroupSize, GroupSize + 1, 3*GroupSize + 17, 1<<20 + 3} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*7 + n)
		}
		ob, sum := OutboardSum(data)
		if sum != shardstore.Sum(data) {
			t.Errorf("%d bytes: root %s, address %s", n, sum, shardstore.Sum(data))
		}
		if !bytes.Equal(ob, Outboard(data)) {
			t.Errorf("%d bytes: outboard differs from Outboard's", n)
		}
	}
}
