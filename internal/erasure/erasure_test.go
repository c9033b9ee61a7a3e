package erasure

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden vectors in testdata/shard")

var testID = [16]byte{0: 0xe1, 1: 0xba, 15: 0x55}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 3: byte(seed >> 24)})
	r.Read(b)
	return b
}

// subsets calls fn with every subset of the n shard slots (as a bit mask).
func subsets(n int, fn func(mask uint)) {
	for m := uint(0); m < 1<<n; m++ {
		fn(m)
	}
}

func pick(shards [][]byte, mask uint) [][]byte {
	out := make([][]byte, len(shards))
	for i := range shards {
		if mask&(1<<i) != 0 {
			out[i] = shards[i]
		}
	}
	return out
}

func TestParamsValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Params
		ok bool
	}{
		{Params{1, 1}, true},
		{Params{1, 3}, true},
		{Params{3, 5}, true},
		{Params{255, 255}, true},
		{Params{1, 255}, true},
		{Params{0, 3}, false},
		{Params{-1, 3}, false},
		{Params{4, 3}, false},
		{Params{1, 256}, false},
		{Params{0, 0}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%v.Validate() = %v, want ok=%v", tc.p, err, tc.ok)
		}
		if _, err := Encode(tc.p, testID, []byte("x")); (err == nil) != tc.ok {
			t.Errorf("Encode(%v) = %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}

var roundTripParams = []Params{{1, 1}, {1, 3}, {2, 2}, {2, 3}, {3, 5}, {4, 6}, {5, 8}}

// TestRoundTripEverySubset decodes from every subset of shards: every subset of
// at least K slots gives the pack back, every smaller one a *TooFewError.
func TestRoundTripEverySubset(t *testing.T) {
	for _, p := range roundTripParams {
		sizes := []int{0, 1, 2, p.K - 1, p.K, p.K + 1, 1000, 64*p.K + 3, 65537}
		if p == (Params{2, 3}) || p == (Params{4, 6}) {
			if !testing.Short() {
				sizes = append(sizes, 16<<20, 16<<20+1)
			}
		}
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%v/%d", p, size), func(t *testing.T) {
				pack := randBytes(uint64(size), size)
				shards, err := Encode(p, testID, pack)
				if err != nil {
					t.Fatal(err)
				}
				if len(shards) != p.N {
					t.Fatalf("got %d shards, want %d", len(shards), p.N)
				}
				wantLen := HeaderSize + (size+p.K-1)/p.K
				for i, s := range shards {
					if len(s) != wantLen {
						t.Fatalf("shard %d is %d bytes, want %d", i, len(s), wantLen)
					}
				}
				if err := Verify(p, shards); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				subsets(p.N, func(mask uint) {
					have := bits.OnesCount(mask)
					got, err := Decode(p, pick(shards, mask))
					if have < p.K {
						var tf *TooFewError
						if !errors.As(err, &tf) || tf.Have != have || tf.Need != p.K || !errors.Is(err, ErrTooFewShards) {
							t.Fatalf("mask %b: err = %v, want TooFewError{%d, %d}", mask, err, have, p.K)
						}
						return
					}
					if err != nil {
						t.Fatalf("mask %b: %v", mask, err)
					}
					if !bytes.Equal(got, pack) {
						t.Fatalf("mask %b: decoded pack differs", mask)
					}
				})
			})
		}
	}
}

func TestReplicas(t *testing.T) {
	pack := randBytes(1, 777)
	shards, err := Encode(Params{1, 4}, testID, pack)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range shards {
		h, payload, err := ParseShard(s)
		if err != nil {
			t.Fatal(err)
		}
		if h.Index != i || !bytes.Equal(payload, pack) {
			t.Errorf("shard %d: index %d, payload equal %v", i, h.Index, bytes.Equal(payload, pack))
		}
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	p := Params{2, 3}
	pack := randBytes(2, 100)
	shards, _ := Encode(p, testID, pack)
	got, err := Decode(p, shards)
	if err != nil {
		t.Fatal(err)
	}
	got[0] ^= 1
	if _, err := Decode(p, shards); err != nil {
		t.Fatal(err)
	}
	if shards[0][HeaderSize] != pack[0] {
		t.Fatal("Decode result aliases the input shard")
	}
}

func isShardError(err error, index int) bool {
	var se *ShardError
	return errors.As(err, &se) && se.Index == index && errors.Is(err, wire.ErrCorrupt)
}

func TestDecodeRejectsInconsistentHeaders(t *testing.T) {
	p := Params{3, 5}
	pack := randBytes(3, 1000)
	shards, _ := Encode(p, testID, pack)
	otherID := testID
	otherID[0] ^= 0xff
	other, _ := Encode(p, otherID, randBytes(4, 1000))
	longer, _ := Encode(p, testID, randBytes(3, 1001)) // same payload length
	wrongCode, _ := Encode(Params{3, 6}, testID, pack)

	for _, tc := range []struct {
		name  string
		edit  func(s [][]byte)
		blame int
	}{
		{"shard of another pack", func(s [][]byte) { s[2] = other[2] }, 2},
		{"shard in the wrong slot", func(s [][]byte) { s[1], s[3] = s[3], s[1] }, 1},
		{"other pack length", func(s [][]byte) { s[4] = longer[4] }, 4},
		{"other parameters", func(s [][]byte) { s[0] = wrongCode[0] }, 0},
		{"majority wins", func(s [][]byte) { s[0], s[1] = other[0], other[1] }, 0},
		{"bad checksum", func(s [][]byte) { s[3] = bytes.Clone(s[3]); s[3][20] ^= 1 }, 3},
		{"truncated", func(s [][]byte) { s[1] = s[1][:HeaderSize+10] }, 1},
		{"empty", func(s [][]byte) { s[2] = []byte{} }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := append([][]byte(nil), shards...)
			tc.edit(s)
			if _, err := Decode(p, s); !isShardError(err, tc.blame) {
				t.Errorf("Decode: %v, want ErrCorrupt naming shard %d", err, tc.blame)
			}
			if err := Verify(p, s); !isShardError(err, tc.blame) {
				t.Errorf("Verify: %v, want ErrCorrupt naming shard %d", err, tc.blame)
			}
		})
	}

	if _, err := Decode(p, shards[:4]); err == nil {
		t.Error("Decode accepted 4 slots for n=5")
	}
	if _, err := Decode(Params{0, 5}, shards); err == nil {
		t.Error("Decode accepted k=0")
	}
}

func TestNonZeroPadding(t *testing.T) {
	// k=2, 5 bytes: L=3 and data shard 1 ends with one byte of padding.
	for _, p := range []Params{{2, 2}, {2, 3}} {
		shards, _ := Encode(p, testID, []byte("hello"))
		s := append([][]byte(nil), shards...)
		s[1] = bytes.Clone(s[1])
		s[1][len(s[1])-1] = 1
		if _, err := Decode(p, s); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%v: Decode with non-zero padding: %v", p, err)
		}
		if err := Verify(p, s); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("%v: Verify with non-zero padding: %v", p, err)
		}
	}
}

func TestVerifyDetectsPayloadFlips(t *testing.T) {
	for _, p := range []Params{{1, 2}, {2, 3}, {3, 5}, {4, 6}} {
		pack := randBytes(5, 4096+7)
		shards, _ := Encode(p, testID, pack)
		for i := range shards {
			for _, off := range []int{HeaderSize, HeaderSize + 100, len(shards[i]) - 1} {
				s := append([][]byte(nil), shards...)
				s[i] = bytes.Clone(s[i])
				s[i][off] ^= 0x40
				if err := Verify(p, s); !errors.Is(err, wire.ErrCorrupt) {
					t.Errorf("%v: flip shard %d byte %d: Verify = %v", p, i, off, err)
				}
			}
		}
		s := append([][]byte(nil), shards...)
		s[p.N-1] = nil
		if err := Verify(p, s); !errors.Is(err, ErrTooFewShards) {
			t.Errorf("%v: Verify with a missing shard: %v", p, err)
		}
	}
}

func TestParseShard(t *testing.T) {
	good, _ := Encode(Params{3, 5}, testID, randBytes(6, 100))
	g := good[4]
	h, payload, err := ParseShard(g)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{K: 3, N: 5, Index: 4, PackID: testID, PackLen: 100, PayloadLen: 34}
	if h != want || len(payload) != 34 {
		t.Fatalf("ParseShard = %+v, %d bytes; want %+v", h, len(payload), want)
	}
	if m := append(h.Marshal(), payload...); !bytes.Equal(m, g) {
		t.Fatal("Marshal does not give the input back")
	}
	// withHeader re-encodes a header (with a good checksum) over g's payload.
	withHeader := func(h Header) []byte { return append(h.Marshal(), payload...) }
	for _, tc := range []struct {
		name  string
		shard []byte
	}{
		{"empty", nil},
		{"short header", g[:HeaderSize-1]},
		{"bad magic", append([]byte("EMBSHRD2"), g[8:]...)},
		{"version 2", func() []byte { b := bytes.Clone(g); b[8] = 2; return b }()},
		{"checksum", func() []byte { b := bytes.Clone(g); b[47] ^= 1; return b }()},
		{"header flip", func() []byte { b := bytes.Clone(g); b[30] ^= 1; return b }()},
		{"k=0", withHeader(Header{K: 0, N: 5, Index: 4, PackLen: 100, PayloadLen: 34})},
		{"n<k", withHeader(Header{K: 3, N: 2, Index: 1, PackLen: 100, PayloadLen: 34})},
		{"index=n", withHeader(Header{K: 3, N: 5, Index: 5, PackLen: 100, PayloadLen: 34})},
		{"payload length not ceil", withHeader(Header{K: 3, N: 5, Index: 4, PackLen: 100, PayloadLen: 33})},
		{"payload longer than header says", append(bytes.Clone(g), 0)},
		{"payload shorter than header says", g[:len(g)-1]},
		{"huge pack length", withHeader(Header{K: 3, N: 5, Index: 4, PackLen: 1 << 62, PayloadLen: 34})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseShard(tc.shard); !errors.Is(err, wire.ErrCorrupt) {
				t.Errorf("ParseShard: %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestReferenceCode checks the codec against an independent implementation of
// the code as docs/spec/shard.md defines it, so the spec alone suffices to
// rebuild a pack.
func TestReferenceCode(t *testing.T) {
	for _, p := range []Params{{1, 3}, {2, 3}, {3, 5}, {4, 6}, {10, 14}, {17, 40}} {
		pack := randBytes(uint64(p.N), 3001)
		shards, err := Encode(p, testID, pack)
		if err != nil {
			t.Fatal(err)
		}
		l := (len(pack) + p.K - 1) / p.K
		padded := make([]byte, p.K*l)
		copy(padded, pack)
		e := refMatrix(p.K, p.N)
		for i := range p.N {
			want := make([]byte, l)
			for j := range p.K {
				for b := range l {
					want[b] ^= gfMul(e[i][j], padded[j*l+b])
				}
			}
			if !bytes.Equal(shards[i][HeaderSize:], want) {
				t.Fatalf("%v: payload %d differs from the reference code", p, i)
			}
		}
	}
}

// gfMul multiplies in GF(2^8) modulo x^8+x^4+x^3+x^2+1 (0x11D).
func gfMul(a, b byte) byte {
	var r byte
	for b != 0 {
		if b&1 != 0 {
			r ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1d
		}
		b >>= 1
	}
	return r
}

func gfInv(a byte) byte {
	for x := 1; x < 256; x++ {
		if gfMul(a, byte(x)) == 1 {
			return byte(x)
		}
	}
	panic("no inverse of 0")
}

// refMatrix builds E = V · (V's top K×K)^-1 with V[r][c] = r^c.
func refMatrix(k, n int) [][]byte {
	v := make([][]byte, n)
	for r := range v {
		v[r] = make([]byte, k)
		x := byte(1)
		for c := range k {
			v[r][c] = x
			x = gfMul(x, byte(r))
		}
	}
	// Invert the top square by Gauss–Jordan on [top | I].
	a := make([][]byte, k)
	for r := range a {
		a[r] = make([]byte, 2*k)
		copy(a[r], v[r])
		a[r][k+r] = 1
	}
	for c := range k {
		piv := c
		for a[piv][c] == 0 {
			piv++
		}
		a[c], a[piv] = a[piv], a[c]
		inv := gfInv(a[c][c])
		for x := range a[c] {
			a[c][x] = gfMul(a[c][x], inv)
		}
		for r := range k {
			if r != c && a[r][c] != 0 {
				f := a[r][c]
				for x := range a[r] {
					a[r][x] ^= gfMul(f, a[c][x])
				}
			}
		}
	}
	e := make([][]byte, n)
	for r := range e {
		e[r] = make([]byte, k)
		for c := range k {
			var s byte
			for x := range k {
				s ^= gfMul(v[r][x], a[x][k+c])
			}
			e[r][c] = s
		}
	}
	return e
}

// Golden vectors: committed once, regenerated only with -update.
var goldens = []struct {
	dir  string
	p    Params
	size int
}{
	{"3of5-1000", Params{3, 5}, 1000},
	{"2of3-empty", Params{2, 3}, 0},
	{"1of3-5", Params{1, 3}, 5},
	{"4of6-4099", Params{4, 6}, 4099},
}

var goldenID = [16]byte([]byte("embassy-golden-1"))

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.dir, func(t *testing.T) {
			dir := filepath.Join("..", "..", "testdata", "shard", g.dir)
			if *update {
				writeGolden(t, dir, g.p, randBytes(uint64(1000+g.size), g.size))
			}
			pack, err := os.ReadFile(filepath.Join(dir, "pack.bin"))
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := os.ReadFile(filepath.Join(dir, "addresses.txt"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Fields(string(addrs))
			if len(lines) != g.p.N {
				t.Fatalf("addresses.txt has %d addresses, want %d", len(lines), g.p.N)
			}
			shards := make([][]byte, g.p.N)
			for i := range shards {
				if shards[i], err = os.ReadFile(filepath.Join(dir, fmt.Sprintf("shard-%02d.bin", i))); err != nil {
					t.Fatal(err)
				}
				sum := blake3.Sum256(shards[i])
				if hex.EncodeToString(sum[:]) != lines[i] {
					t.Errorf("shard %d: BLAKE3 %x, addresses.txt says %s", i, sum, lines[i])
				}
			}
			// Encoding is deterministic: the vectors must be reproduced exactly.
			fresh, err := Encode(g.p, goldenID, pack)
			if err != nil {
				t.Fatal(err)
			}
			for i := range fresh {
				if !bytes.Equal(fresh[i], shards[i]) {
					t.Errorf("Encode no longer reproduces shard %d", i)
				}
			}
			if err := Verify(g.p, shards); err != nil {
				t.Fatal(err)
			}
			subsets(g.p.N, func(mask uint) {
				if bits.OnesCount(mask) < g.p.K {
					return
				}
				got, err := Decode(g.p, pick(shards, mask))
				if err != nil || !bytes.Equal(got, pack) {
					t.Fatalf("mask %b: %v", mask, err)
				}
			})
		})
	}
}

func writeGolden(t *testing.T, dir string, p Params, pack []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shards, err := Encode(p, goldenID, pack)
	if err != nil {
		t.Fatal(err)
	}
	var addrs strings.Builder
	for i, s := range shards {
		sum := blake3.Sum256(s)
		fmt.Fprintf(&addrs, "%x\n", sum)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("shard-%02d.bin", i)), s, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pack.bin"), pack, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "addresses.txt"), []byte(addrs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseShard(f *testing.F) {
	for _, p := range []Params{{1, 1}, {2, 3}, {3, 5}} {
		for _, size := range []int{0, 1, 10, 100} {
			shards, _ := Encode(p, testID, randBytes(uint64(size), size))
			for _, s := range shards {
				f.Add(s)
			}
		}
	}
	for _, g := range goldens {
		if s, err := os.ReadFile(filepath.Join("..", "..", "testdata", "shard", g.dir, "shard-00.bin")); err == nil {
			f.Add(s)
		}
	}
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, payload, err := ParseShard(in)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if out := append(h.Marshal(), payload...); !bytes.Equal(out, in) {
			t.Fatalf("parse→marshal differs")
		}
	})
}

// FuzzDecode decodes random subsets of shards whose headers may have flipped
// bytes. Payload bytes are never flipped: with exactly K shards Reed–Solomon
// cannot tell a flipped payload byte, and payload integrity comes from the
// shard addresses the caller checks before Decode. The property: Decode
// returns the exact pack or an error, and succeeds whenever ≥K untouched
// shards are given.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(2), uint16(1000), uint64(1), uint16(0b11011), []byte{})
	f.Add(uint8(0), uint16(0), uint64(2), uint16(0b1), []byte{})
	f.Add(uint8(3), uint16(17), uint64(3), uint16(0b111111), []byte{1, 30, 1})
	f.Add(uint8(2), uint16(100), uint64(4), uint16(0b10101), []byte{0, 35, 0x80, 2, 35, 0x80, 4, 35, 0x80})
	f.Add(uint8(4), uint16(4096), uint64(5), uint16(0xff), []byte{3, 11, 1, 3, 47, 9})
	f.Fuzz(func(t *testing.T, sel uint8, size uint16, seed uint64, mask uint16, flips []byte) {
		p := roundTripParams[int(sel)%len(roundTripParams)]
		pack := randBytes(seed, int(size))
		shards, err := Encode(p, testID, pack)
		if err != nil {
			t.Fatal(err)
		}
		in := pick(shards, uint(mask))
		touched := false
		for ; len(flips) >= 3; flips = flips[3:] {
			i, off, x := int(flips[0])%p.N, int(flips[1])%HeaderSize, flips[2]
			if in[i] == nil || x == 0 {
				continue
			}
			in[i] = bytes.Clone(in[i])
			in[i][off] ^= x
			touched = true
		}
		got, err := Decode(p, in)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) && !errors.Is(err, ErrTooFewShards) {
				t.Fatalf("unexpected error category: %v", err)
			}
			if !touched && bits.OnesCount(uint(mask)&(1<<p.N-1)) >= p.K {
				t.Fatalf("untouched shards failed: %v", err)
			}
			return
		}
		if !bytes.Equal(got, pack) {
			t.Fatalf("Decode returned a wrong pack (%d bytes, want %d)", len(got), len(pack))
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	for _, p := range []Params{{2, 3}, {4, 6}} {
		for _, size := range []int{1 << 20, 16 << 20} {
			pack := randBytes(7, size)
			b.Run(fmt.Sprintf("%v/%dMiB", p, size>>20), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Encode(p, testID, pack); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecode rebuilds with data shard 0 missing, the common degraded case.
func BenchmarkDecode(b *testing.B) {
	for _, p := range []Params{{2, 3}, {4, 6}} {
		for _, size := range []int{1 << 20, 16 << 20} {
			pack := randBytes(8, size)
			shards, _ := Encode(p, testID, pack)
			shards[0] = nil
			b.Run(fmt.Sprintf("%v/%dMiB", p, size>>20), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Decode(p, shards); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestEncodeIntoDirtyBuffer: shards cut from a reused buffer full of old
// bytes are identical to fresh ones (the padding is cleared), for every
// pack length around the shard boundaries.
func TestEncodeIntoDirtyBuffer(t *testing.T) {
	for _, p := range []Params{{K: 2, N: 3}, {K: 4, N: 6}, {K: 1, N: 3}} {
		for _, n := range []int{0, 1, 7, 1000, 4097} {
			pack := randBytes(uint64(n), n)
			want, err := Encode(p, [16]byte{9}, pack)
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Repeat([]byte{0xa5}, BufferSize(p, n)+13)
			got, err := EncodeInto(buf, p, [16]byte{9}, pack)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%v, %d bytes: shard %d differs from Encode's", p, n, i)
				}
				// Shards start at multiples of 4 KiB (for O_DIRECT writes).
				if &got[i][0] != &buf[i*shardStride(len(want[i]))] || shardStride(len(want[i]))%4096 != 0 {
					t.Fatalf("%v, %d bytes: shard %d not cut from the buffer at its 4 KiB stride", p, n, i)
				}
			}
		}
	}
}

// TestEncodeInSlot: a pack built in the slice Slot returns gives the same
// shards as the pack copied from elsewhere, for codes with one, two and
// many data shards and lengths around the payload and 4 KiB boundaries, in
// a fresh buffer and in a reused one full of old bytes; the shards are cut
// from that buffer and the slot lies inside it.
func TestEncodeInSlot(t *testing.T) {
	params := []Params{{K: 1, N: 1}, {K: 1, N: 3}, {K: 2, N: 2}, {K: 2, N: 3}, {K: 3, N: 5}, {K: 4, N: 6}, {K: 10, N: 14}}
	lengths := []int{1, 2, 7, 1000, 4047, 4048, 4049, 4096, 8095, 8096, 8097, 65536, 1<<20 + 3}
	for _, p := range params {
		for _, n := range lengths {
			pack := randBytes(uint64(n)*31+uint64(p.K), n)
			want, err := Encode(p, [16]byte{7}, pack)
			if err != nil {
				t.Fatal(err)
			}
			for _, reuse := range []bool{false, true} {
				var buf []byte
				if reuse {
					buf = bytes.Repeat([]byte{0x5a}, BufferSize(p, n)+4096)
				}
				full, slot := Slot(buf, p, n)
				if len(slot) != n || cap(slot) != n || len(full) != BufferSize(p, n) {
					t.Fatalf("%v, %d bytes: slot %d/%d in %d, want %d in %d", p, n, len(slot), cap(slot), len(full), n, BufferSize(p, n))
				}
				if reuse && &full[0] != &buf[0] {
					t.Fatalf("%v, %d bytes: Slot did not reuse a large enough buffer", p, n)
				}
				copy(slot, pack)
				got, err := EncodeInto(full, p, [16]byte{7}, slot)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("%v, %d bytes, reuse %v: shard %d differs from Encode's", p, n, reuse, i)
					}
					if &got[i][0] != &full[i*shardStride(len(want[i]))] {
						t.Fatalf("%v, %d bytes: shard %d not cut from the buffer", p, n, i)
					}
				}
				if _, err := Decode(p, got); err != nil {
					t.Fatalf("%v, %d bytes: decode: %v", p, n, err)
				}
			}
		}
	}
}
