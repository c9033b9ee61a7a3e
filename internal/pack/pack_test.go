package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"github.com/embassy-project/embassy/internal/testenv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/pack")

// randBytes returns n deterministic pseudo-random bytes.

// textLike returns n bytes of deterministic registry-like CSV text.
func textLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	first := []string{"Anna", "Jaan", "Mari", "Peeter", "Kadri", "Toomas", "Liis", "Andres", "Maria", "Juhan"}
	last := []string{"Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel"}
	places := []string{"Tallinn", "Tartu", "Narva", "Pärnu", "Kuressaare", "Viljandi", "Rakvere", "Haapsalu"}
	streets := []string{"Pikk", "Lai", "Vene", "Tartu mnt", "Narva mnt", "Pärnu mnt", "Kesk", "Aia"}
	var b bytes.Buffer
	b.WriteString("personal_code;first_name;last_name;birth_date;municipality;address;status;updated\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%d%010d;%s;%s;%04d-%02d-%02d;%s;%s %d-%d;%s;2026-%02d-%02dT%02d:%02d:%02dZ\n",
			3+r.IntN(4), r.IntN(1e10), first[r.IntN(len(first))], last[r.IntN(len(last))],
			1920+r.IntN(100), 1+r.IntN(12), 1+r.IntN(28), places[r.IntN(len(places))],
			streets[r.IntN(len(streets))], 1+r.IntN(200), 1+r.IntN(80),
			[]string{"active", "active", "active", "deceased", "emigrated"}[r.IntN(5)],
			1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60))
	}
	return b.Bytes()[:n]
}

func TestCompressRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		raw       []byte
		wantCodec byte
	}{
		{"empty", nil, CodecRaw},
		{"one byte", []byte{7}, CodecRaw},
		{"short text", []byte("hello"), CodecRaw},
		{"text 8 KiB", textLike(1, 8<<10), CodecZstd},
		{"text 1 MiB", textLike(2, 1<<20), CodecZstd},
		{"random 1 MiB", testenv.RandBytes(3, 1<<20), CodecRaw},
		{"zeros max", make([]byte, MaxRawLength), CodecZstd},
		{"random max", testenv.RandBytes(4, MaxRawLength), CodecRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			stored := Compress(bytes.Clone(prefix), tt.raw)
			if !bytes.HasPrefix(stored, prefix) {
				t.Fatal("Compress clobbered dst")
			}
			stored = stored[len(prefix):]
			if stored[0] != tt.wantCodec {
				t.Errorf("codec %d, want %d", stored[0], tt.wantCodec)
			}
			if len(stored) > len(tt.raw)+1 {
				t.Errorf("stored %d bytes for %d raw", len(stored), len(tt.raw))
			}
			got, err := Decompress(bytes.Clone(prefix), stored, len(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, append(bytes.Clone(prefix), tt.raw...)) {
				t.Fatal("round trip differs")
			}
			// The wrong expected length is always refused.
			for _, n := range []int{len(tt.raw) - 1, len(tt.raw) + 1} {
				if n < 0 {
					continue
				}
				if _, err := Decompress(nil, stored, n); !errors.Is(err, wire.ErrCorrupt) {
					t.Errorf("Decompress with rawLen %d (actual %d): %v, want ErrCorrupt", n, len(tt.raw), err)
				}
			}
		})
	}
}

func TestDecompressReusesCapacity(t *testing.T) {
	raw := textLike(5, 100<<10)
	stored := Compress(nil, raw)
	buf := make([]byte, 0, 1<<20)
	out, err := Decompress(buf, stored, len(raw))
	if err != nil {
		t.Fatal(err)
	}
	if cap(out) != cap(buf) || &out[0] != &buf[:1][0] {
		t.Fatal("Decompress did not decode into the caller's buffer")
	}
}

func TestDecompressErrors(t *testing.T) {
	text := textLike(6, 20000)
	z := Compress(nil, text)
	if z[0] != CodecZstd {
		t.Fatal("text not compressed")
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	twoFrames := append([]byte{CodecZstd}, enc.EncodeAll(text[:100], nil)...)
	twoFrames = enc.EncodeAll(text[100:200], twoFrames)
	noFCS := append([]byte{CodecZstd}, 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x01, 0x00, 0x00) // frame header without content size
	tests := []struct {
		name   string
		stored []byte
		rawLen int
	}{
		{"empty stored", nil, 0},
		{"unknown codec", []byte{2, 'a'}, 1},
		{"raw too long", []byte{CodecRaw, 'a', 'b'}, 1},
		{"raw too short", []byte{CodecRaw, 'a'}, 2},
		{"negative rawLen", []byte{CodecRaw}, -1},
		{"rawLen above limit", []byte{CodecRaw}, MaxRawLength + 1},
		{"zstd truncated", z[:len(z)/2], len(text)},
		{"zstd header only", z[:5], len(text)},
		{"zstd no frame", []byte{CodecZstd}, 0},
		{"zstd garbage", []byte{CodecZstd, 1, 2, 3, 4, 5, 6, 7, 8}, 8},
		{"zstd two frames", twoFrames, 100},
		{"zstd two frames full length", twoFrames, 200},
		{"zstd without content size", noFCS, 0},
		{"zstd trailing garbage", append(bytes.Clone(z), 0xff), len(text)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Decompress(nil, tt.stored, tt.rawLen)
			if !errors.Is(err, wire.ErrCorrupt) || out != nil {
				t.Fatalf("Decompress = %d bytes, %v; want nil, ErrCorrupt", len(out), err)
			}
		})
	}
}

// TestDecompressFlips flips every byte of a zstd stored form: the frame
// checksum (and the size checks) must catch each one.
func TestDecompressFlips(t *testing.T) {
	raw := textLike(7, 3000)
	stored := Compress(nil, raw)
	for i := range stored {
		bad := bytes.Clone(stored)
		bad[i] ^= 0x20
		out, err := Decompress(nil, bad, len(raw))
		if err == nil && bytes.Equal(out, raw) {
			continue // a flip in a bit the decoder ignores changes nothing
		}
		if !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("flip byte %d: %d bytes, %v; want ErrCorrupt", i, len(out), err)
		}
	}
}

func TestCompressConcurrent(t *testing.T) {
	inputs := [][]byte{textLike(8, 50000), testenv.RandBytes(9, 50000), nil, textLike(10, 1<<20)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				raw := inputs[(g+j)%len(inputs)]
				got, err := Decompress(nil, Compress(nil, raw), len(raw))
				if err != nil || !bytes.Equal(got, raw) {
					t.Errorf("goroutine %d: round trip failed: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

type blob struct {
	t   BlobType
	raw []byte
}

func buildPack(t testing.TB, h *chunk.Hasher, blobs []blob) ([]byte, []Entry) {
	t.Helper()
	b := NewBuilder()
	var want []Entry
	for _, bl := range blobs {
		stored := Compress(nil, bl.raw)
		before := b.Size()
		e := b.Add(bl.t, h.Sum(bl.raw), stored, len(bl.raw))
		if b.Size() <= before {
			t.Fatal("Size did not grow")
		}
		want = append(want, e)
	}
	if b.Count() != len(blobs) {
		t.Fatalf("Count = %d, want %d", b.Count(), len(blobs))
	}
	size := b.Size()
	plain := b.Finish()
	if len(plain) != size {
		t.Fatalf("Size() = %d before Finish, Finish gave %d bytes", size, len(plain))
	}
	return plain, want
}

func testBlobs() []blob {
	return []blob{
		{BlobData, textLike(11, 100<<10)},
		{BlobData, testenv.RandBytes(12, 3000)},
		{BlobTree, []byte(`{"entries":[{"name":"population.csv","type":"file","size":102400}]}`)},
		{BlobData, nil},
		{BlobTree, bytes.Repeat([]byte(`{"name":"f","type":"file"},`), 200)},
	}
}

func TestBuilderRoundTrip(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{1})
	for n := 0; n <= len(testBlobs()); n++ {
		blobs := testBlobs()[:n]
		plain, want := buildPack(t, h, blobs)
		got, err := ParseIndex(plain)
		if err != nil {
			t.Fatalf("%d blobs: %v", n, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%d blobs: index\n got %v\nwant %v", n, got, want)
		}
		for i, e := range got {
			stored, err := Blob(plain, e)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := Decompress(nil, stored, int(e.RawLength))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, blobs[i].raw) || h.Sum(raw) != e.ID || e.Type != blobs[i].t {
				t.Fatalf("blob %d differs", i)
			}
		}
	}
}

func TestBuilderReuse(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{2})
	b := NewBuilder()
	b.Add(BlobData, h.Sum([]byte("a")), Compress(nil, []byte("a")), 1)
	first := b.Finish()
	if b.Count() != 0 || b.Size() != 1+TrailerSize {
		t.Fatalf("after Finish: Count %d Size %d", b.Count(), b.Size())
	}
	b.Add(BlobData, h.Sum([]byte("b")), Compress(nil, []byte("b")), 1)
	second := b.Finish()
	if !bytes.Equal(first[:2], []byte{CodecRaw, 'a'}) || !bytes.Equal(second[:2], []byte{CodecRaw, 'b'}) {
		t.Fatal("second pack clobbered the first")
	}
	b.Add(BlobData, chunk.ID{}, []byte{CodecRaw}, 0)
	b.Reset()
	if e, err := ParseIndex(b.Finish()); err != nil || len(e) != 0 {
		t.Fatalf("Reset did not empty the builder: %v, %v", e, err)
	}
}

func TestBuilderAddPanics(t *testing.T) {
	tests := []struct {
		name   string
		t      BlobType
		stored []byte
		rawLen int
	}{
		{"type 0", 0, []byte{0}, 0},
		{"type 3", 3, []byte{0}, 0},
		{"empty stored", BlobData, nil, 0},
		{"stored longer than raw+1", BlobData, []byte{0, 1, 2}, 1},
		{"raw too long", BlobData, []byte{1, 2}, MaxRawLength + 1},
		{"negative raw", BlobData, []byte{1}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Add did not panic")
				}
			}()
			NewBuilder().Add(tt.t, chunk.ID{}, tt.stored, tt.rawLen)
		})
	}
}

// rawPack assembles a pack by hand, without the Builder's checks.
func rawPack(blobArea []byte, index []byte, ver byte, mg string) []byte {
	p := append(bytes.Clone(blobArea), index...)
	p = binary.BigEndian.AppendUint32(p, uint32(len(index)))
	p = append(p, ver)
	return append(p, mg...)
}

func entryBytes(t BlobType, length, rawLen uint64) []byte {
	b := []byte{byte(t)}
	b = append(b, make([]byte, 32)...)
	b = binary.AppendUvarint(b, length)
	return binary.AppendUvarint(b, rawLen)
}

func TestParseIndexErrors(t *testing.T) {
	one := append([]byte{1}, entryBytes(BlobData, 3, 2)...)
	tests := []struct {
		name  string
		plain []byte
	}{
		{"empty", nil},
		{"short", []byte("EMBPACK1")},
		{"bad magic", rawPack(nil, []byte{0}, version, "EMBPACK2")},
		{"bad version", rawPack(nil, []byte{0}, 2, magic)},
		{"index length past start", append(binary.BigEndian.AppendUint32(nil, 5), append([]byte{version}, magic...)...)},
		{"empty index", rawPack(nil, nil, version, magic)},
		{"count past index", rawPack(nil, []byte{2}, version, magic)},
		{"count above limit", rawPack(nil, binary.AppendUvarint(nil, MaxBlobs+1), version, magic)},
		{"non-minimal count", rawPack(nil, []byte{0x80, 0x00}, version, magic)},
		{"unknown type", rawPack([]byte{0, 'a'}, append([]byte{1}, entryBytes(3, 2, 1)...), version, magic)},
		{"type zero", rawPack([]byte{0, 'a'}, append([]byte{1}, entryBytes(0, 2, 1)...), version, magic)},
		{"zero length", rawPack(nil, append([]byte{1}, entryBytes(BlobData, 0, 0)...), version, magic)},
		{"stored longer than raw+1", rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 1)...), version, magic)},
		{"raw above limit", rawPack([]byte{0, 'a'}, append([]byte{1}, entryBytes(BlobData, 2, MaxRawLength+1)...), version, magic)},
		{"blob past area", rawPack([]byte{0, 'a'}, one, version, magic)},
		{"gap after blobs", rawPack([]byte{0, 'a', 'b', 'c'}, one, version, magic)},
		{"trailing index bytes", rawPack([]byte{0, 'a', 'b'}, append(bytes.Clone(one), 0), version, magic)},
		{"truncated entry", rawPack([]byte{0, 'a', 'b'}, one[:20], version, magic)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e, err := ParseIndex(tt.plain); !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("ParseIndex = %v, %v; want ErrCorrupt", e, err)
			}
		})
	}
	// And the well-formed neighbour of those cases parses.
	if e, err := ParseIndex(rawPack([]byte{0, 'a', 'b'}, one, version, magic)); err != nil || len(e) != 1 {
		t.Fatalf("valid hand-made pack: %v, %v", e, err)
	}
}

func TestBlobBounds(t *testing.T) {
	plain, entries := buildPack(t, chunk.NewHasher(chunk.Key{3}), testBlobs())
	area := entries[len(entries)-1].Offset + entries[len(entries)-1].Length
	bad := []Entry{
		{Offset: area, Length: 1},
		{Offset: area - 1, Length: 2},
		{Offset: 0, Length: 0},
		{Offset: ^uint64(0), Length: 2},
		{Offset: 1, Length: ^uint64(0)},
	}
	for _, e := range bad {
		if _, err := Blob(plain, e); !errors.Is(err, wire.ErrCorrupt) {
			t.Errorf("Blob(%d+%d) = %v, want ErrCorrupt", e.Offset, e.Length, err)
		}
	}
	if _, err := Blob(plain[:len(plain)-1], entries[0]); !errors.Is(err, wire.ErrCorrupt) {
		t.Errorf("Blob on a truncated pack: %v", err)
	}
}

// TestParseIndexFlips flips every byte of the index and trailer: the parser
// must either refuse with ErrCorrupt or return an index that still tiles the
// blob area (a flipped ID or a type changed to the other valid type is
// undetectable here; the seal authenticates the whole pack).
func TestParseIndexFlips(t *testing.T) {
	plain, entries := buildPack(t, chunk.NewHasher(chunk.Key{4}), testBlobs())
	area := int(entries[len(entries)-1].Offset + entries[len(entries)-1].Length)
	for i := area; i < len(plain); i++ {
		for _, mask := range []byte{0x01, 0x80} {
			bad := bytes.Clone(plain)
			bad[i] ^= mask
			got, err := ParseIndex(bad)
			if err != nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("flip %d: %v does not wrap ErrCorrupt", i, err)
				}
				continue
			}
			checkTiling(t, bad, got)
		}
	}
}

func checkTiling(t *testing.T, plain []byte, entries []Entry) {
	t.Helper()
	var off uint64
	for _, e := range entries {
		if e.Offset != off {
			t.Fatalf("entry at %d, want %d", e.Offset, off)
		}
		if _, err := Blob(plain, e); err != nil {
			t.Fatal(err)
		}
		off += e.Length
	}
}

// remarshal rebuilds a pack from a parsed index with the Builder.
func remarshal(plain []byte, entries []Entry) []byte {
	b := NewBuilder()
	for _, e := range entries {
		stored, err := Blob(plain, e)
		if err != nil {
			panic(err)
		}
		b.Add(e.Type, e.ID, stored, int(e.RawLength))
	}
	return b.Finish()
}

func FuzzParseIndex(f *testing.F) {
	plain, _ := buildPack(f, chunk.NewHasher(chunk.Key{5}), []blob{
		{BlobData, textLike(13, 2000)}, {BlobTree, []byte("tree")}, {BlobData, nil},
	})
	f.Add(plain)
	f.Add(rawPack(nil, []byte{0}, version, magic))
	f.Add(rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 2)...), version, magic))
	if golden, err := os.ReadFile(goldenPath); err == nil {
		f.Add(golden)
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		entries, err := ParseIndex(plain)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if again := remarshal(plain, entries); !bytes.Equal(again, plain) {
			t.Fatalf("parse → marshal differs:\n in %x\nout %x", plain, again)
		}
		for _, e := range entries {
			stored, _ := Blob(plain, e)
			if out, err := Decompress(nil, stored, int(e.RawLength)); err != nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("Decompress error %v does not wrap ErrCorrupt", err)
				}
			} else if uint64(len(out)) != e.RawLength {
				t.Fatalf("Decompress gave %d bytes, want %d", len(out), e.RawLength)
			}
		}
	})
}

func FuzzDecompress(f *testing.F) {
	for _, raw := range [][]byte{nil, []byte("x"), textLike(14, 5000), testenv.RandBytes(15, 100)} {
		f.Add(Compress(nil, raw), len(raw))
	}
	f.Fuzz(func(t *testing.T, stored []byte, rawLen int) {
		out, err := Decompress(nil, stored, rawLen)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if len(out) != rawLen {
			t.Fatalf("got %d bytes, want %d", len(out), rawLen)
		}
	})
}

var goldenPath = filepath.Join("..", "..", "testdata", "pack", "v1.pack")

// goldenKey keys the IDs of the golden pack's blobs.
var goldenKey = chunk.Key{'g', 'o', 'l', 'd', 'e', 'n'}

// TestGolden checks that the committed pack keeps parsing and decompressing to
// the same blobs. Run with -update to rewrite it (then review and commit).
func TestGolden(t *testing.T) {
	h := chunk.NewHasher(goldenKey)
	blobs := testBlobs()
	if *update {
		plain, _ := buildPack(t, h, blobs)
		if err := os.WriteFile(goldenPath, plain, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plain, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseIndex(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(blobs) {
		t.Fatalf("%d entries, want %d", len(entries), len(blobs))
	}
	codecs := []byte{CodecZstd, CodecRaw, CodecRaw, CodecRaw, CodecZstd}
	for i, e := range entries {
		stored, err := Blob(plain, e)
		if err != nil {
			t.Fatal(err)
		}
		if stored[0] != codecs[i] {
			t.Errorf("blob %d: codec %d, want %d", i, stored[0], codecs[i])
		}
		raw, err := Decompress(nil, stored, int(e.RawLength))
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if e.Type != blobs[i].t || e.ID != h.Sum(blobs[i].raw) || !bytes.Equal(raw, blobs[i].raw) {
			t.Errorf("blob %d differs from the expected content", i)
		}
	}
	if !bytes.Equal(remarshal(plain, entries), plain) {
		t.Error("golden pack does not re-encode to itself")
	}
}

func benchInputs() []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"text/64KiB", textLike(20, 64<<10)},
		{"text/1MiB", textLike(21, 1<<20)},
		{"random/64KiB", testenv.RandBytes(22, 64<<10)},
		{"random/1MiB", testenv.RandBytes(23, 1<<20)},
	}
}

func BenchmarkCompress(b *testing.B) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			dst := make([]byte, 0, len(in.data)+64)
			var n int
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				n = len(Compress(dst[:0], in.data))
			}
			b.ReportMetric(float64(len(in.data))/float64(n), "ratio")
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			stored := Compress(nil, in.data)
			dst := make([]byte, 0, len(in.data))
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decompress(dst[:0], stored, len(in.data)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLevel compares the zstd levels considered for Compress on 1 MiB of
// registry-like text (the numbers behind encoderLevel; see docs/spec/pack.md).
func BenchmarkLevel(b *testing.B) {
	data := textLike(24, 1<<20)
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(lvl.String(), func(b *testing.B) {
			dst := make([]byte, 0, len(data))
			var n int
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				n = len(enc.EncodeAll(data, dst[:0]))
			}
			b.ReportMetric(float64(len(data))/float64(n), "ratio")
		})
	}
}

func BenchmarkBuilder(b *testing.B) {
	stored := Compress(nil, testenv.RandBytes(25, 1<<20))
	b.SetBytes(16 * int64(len(stored)))
	b.ReportAllocs()
	for b.Loop() {
		bl := NewBuilder()
		for i := range 16 {
			bl.Add(BlobData, chunk.ID{byte(i)}, stored, len(stored)-1)
		}
		plain := bl.Finish()
		if _, err := ParseIndex(plain); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSpecExample checks the worked example in docs/spec/pack.md byte for byte.
func TestSpecExample(t *testing.T) {
	id := chunk.NewHasher(chunk.Key{}).Sum([]byte("hello"))
	b := NewBuilder()
	b.Add(BlobData, id, Compress(nil, []byte("hello")), 5)
	got := b.Finish()
	want := []byte{0x00, 'h', 'e', 'l', 'l', 'o', 0x01, 0x01}
	want = append(want, id[:]...)
	want = append(want, 0x06, 0x05, 0x00, 0x00, 0x00, 0x24, 0x01)
	want = append(want, "EMBPACK1"...)
	if !bytes.Equal(got, want) || len(got) != 55 {
		t.Fatalf("example pack:\n got %x\nwant %x", got, want)
	}
}
