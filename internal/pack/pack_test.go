package pack

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/pack/v2.pack (v1.pack is never rewritten)")

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

// Word lists of the business register of internal/sample (the benchmark
// corpus), copied so the golden pack does not change with the generator.
var (
	companyFirst = []string{"Mari", "Jaan", "Kadri", "Andres", "Liis", "Toomas", "Kristiina", "Peeter", "Anna", "Mihkel", "Eva", "Rasmus", "Laura", "Oskar", "Helena", "Markus"}
	companyLast  = []string{"Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel", "Lepik", "Kuusk", "Vaher", "Lõhmus", "Karu", "Teder"}
	companyTowns = []string{"Tallinn", "Tartu", "Narva", "Pärnu", "Kohtla-Järve", "Viljandi", "Maardu", "Rakvere", "Kuressaare", "Sillamäe", "Valga", "Võru"}
	companyWords = strings.Fields(`the minister regulation shall enter into force decree parliament article section
		amendment procedure registry authority public notice hereby council local government land parcel
		cadastral register population residence permit business company shareholder annual report appeal
		court decision tender procurement budget allocation municipality county ordinance pursuant`)
)

// companyJSON returns company i of a deterministic business register: one
// pretty-printed JSON document of 280 to 440 bytes, ~350 on average, shaped
// like the corpus's business/*.json files.
func companyJSON(seed uint64, i int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	c := struct {
		Code     int      `json:"registry_code"`
		Name     string   `json:"name"`
		Town     string   `json:"town"`
		Founded  string   `json:"founded"`
		Capital  int      `json:"share_capital_eur"`
		Board    []string `json:"board"`
		Activity string   `json:"activity"`
		Status   string   `json:"status"`
		Turnover []int    `json:"annual_turnover_eur"`
	}{
		Code:    10000000 + i,
		Name:    pick(companyLast) + " " + pick([]string{"OÜ", "AS", "MTÜ", "SA"}),
		Town:    pick(companyTowns),
		Founded: fmt.Sprintf("%04d-%02d-%02d", 1992+r.IntN(34), 1+r.IntN(12), 1+r.IntN(28)),
		Capital: 2500 * (1 + r.IntN(400)),
	}
	words := make([]string, 6)
	for k := range words {
		words[k] = pick(companyWords)
	}
	c.Activity = strings.Join(words, " ") + ".\n"
	c.Status = pick([]string{"registered", "in liquidation", "deleted"})
	for range 1 + r.IntN(4) {
		c.Board = append(c.Board, pick(companyFirst)+" "+pick(companyLast))
	}
	for range r.IntN(6) {
		c.Turnover = append(c.Turnover, r.IntN(10_000_000))
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// treeJSON returns a deterministic JSON directory listing of n company files
// (a tree-like blob; the real tree encoding is internal/tree's business).
func treeJSON(first, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"entries":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"%08d.json","type":"file","size":%d}`, 10000000+first+i, len(companyJSON(40, first+i)))
	}
	b.WriteString("]}")
	return b.Bytes()
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
	frames := make([][]blob, len(blobs))
	for i, bl := range blobs {
		frames[i] = []blob{bl} // Add is a one-blob AddFrame (TestAddIsOneBlobFrame)
	}
	return buildFrames(t, h, frames)
}

// buildFrames builds a pack of frames with AddFrame: each frame's blobs are
// concatenated and compressed together. It returns the plaintext and the
// entries AddFrame returned.
func buildFrames(t testing.TB, h *chunk.Hasher, frames [][]blob) ([]byte, []Entry) {
	t.Helper()
	b := NewBuilder()
	var want []Entry
	for _, f := range frames {
		var raw []byte
		var members []Member
		for _, bl := range f {
			raw = append(raw, bl.raw...)
			members = append(members, Member{Type: bl.t, ID: h.Sum(bl.raw), RawLength: len(bl.raw)})
		}
		before := b.Size()
		want = append(want, b.AddFrame(Compress(nil, raw), members)...)
		if b.Size() <= before {
			t.Fatal("Size did not grow")
		}
	}
	if b.Count() != len(want) {
		t.Fatalf("Count = %d, want %d", b.Count(), len(want))
	}
	size := b.Size()
	plain := b.Finish()
	if len(plain) != size {
		t.Fatalf("Size() = %d before Finish, Finish gave %d bytes", size, len(plain))
	}
	return plain, want
}

// oneBlobFrames puts each blob in a frame of its own.
func oneBlobFrames(blobs []blob) [][]blob {
	frames := make([][]blob, len(blobs))
	for i, bl := range blobs {
		frames[i] = []blob{bl}
	}
	return frames
}

// groupFrames splits entries (as ParseIndex returns them) into frames.
// frameBlobs decompresses the frame whose entries are f and returns its
// codec, its raw bytes and each blob as Extract gives it; any error fails
// the test.
func frameBlobs(t *testing.T, plain []byte, i int, f []Entry) (codec byte, raw []byte, blobs [][]byte) {
	t.Helper()
	stored, err := Blob(plain, f[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err = Decompress(nil, stored, int(f[0].FrameLength))
	if err != nil {
		t.Fatalf("frame %d: %v", i, err)
	}
	for j, e := range f {
		blob, err := Extract(raw, e)
		if err != nil {
			t.Fatalf("frame %d blob %d: %v", i, j, err)
		}
		blobs = append(blobs, blob)
	}
	return stored[0], raw, blobs
}

func groupFrames(entries []Entry) [][]Entry {
	var frames [][]Entry
	for i := 0; i < len(entries); {
		j := i + 1
		for j < len(entries) && entries[j].Offset == entries[i].Offset {
			j++
		}
		frames = append(frames, entries[i:j])
		i = j
	}
	return frames
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
			if e.Skip != 0 || e.FrameLength != e.RawLength {
				t.Fatalf("blob %d: Add made a frame at %d of %d bytes", i, e.Skip, e.FrameLength)
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

// index encodes an index of the given encoded entries.
func index(entries ...[]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
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
		{"version 0", rawPack(nil, []byte{0}, 0, magic)},
		{"version 3", rawPack(nil, []byte{0}, 3, magic)},
		{"version 255", rawPack(nil, []byte{0}, 255, magic)},
		{"index length past start", append(binary.BigEndian.AppendUint32(nil, 5), append([]byte{version}, magic...)...)},
		{"empty index", rawPack(nil, nil, version, magic)},
		{"count past index", rawPack(nil, []byte{2}, version, magic)},
		{"count above limit", rawPack(nil, binary.AppendUvarint(nil, MaxBlobs+1), version, magic)},
		{"non-minimal count", rawPack(nil, []byte{0x80, 0x00}, version, magic)},
		{"unknown type", rawPack([]byte{0, 'a'}, append([]byte{1}, entryBytes(3, 2, 1)...), version, magic)},
		{"type zero", rawPack([]byte{0, 'a'}, append([]byte{1}, entryBytes(0, 2, 1)...), version, magic)},
		{"zero length", rawPack(nil, append([]byte{1}, entryBytes(BlobData, 0, 0)...), version, magic)},
		{"zero length v1", rawPack(nil, append([]byte{1}, entryBytes(BlobData, 0, 0)...), versionV1, magic)},
		{"stored longer than raw+1", rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 1)...), version, magic)},
		{"stored longer than raw+1 v1", rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 1)...), versionV1, magic)},
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
	// And the well-formed neighbour of those cases parses, in both versions.
	for _, ver := range []byte{versionV1, version} {
		if e, err := ParseIndex(rawPack([]byte{0, 'a', 'b'}, one, ver, magic)); err != nil || len(e) != 1 {
			t.Fatalf("valid hand-made pack, version %d: %v, %v", ver, e, err)
		}
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
	h := chunk.NewHasher(chunk.Key{4})
	oneBlob, _ := buildPack(t, h, testBlobs())
	frames, _ := buildFrames(t, h, flipFrames())
	for _, tt := range []struct {
		name  string
		plain []byte
	}{{"one-blob frames", oneBlob}, {"multi-blob frames", frames}} {
		t.Run(tt.name, func(t *testing.T) {
			plain := tt.plain
			for i := blobArea(plain); i < len(plain); i++ {
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
					checkFrames(t, bad, got)
				}
			}
		})
	}
}

// flipFrames is a small pack of multi-blob frames, one-blob frames, empty
// blobs and a repeated blob.
func flipFrames() [][]blob {
	return [][]blob{
		{{BlobData, companyJSON(1, 0)}, {BlobData, nil}, {BlobData, companyJSON(1, 1)}, {BlobData, companyJSON(1, 2)}},
		{{BlobData, testenv.RandBytes(16, 300)}},
		{{BlobTree, treeJSON(0, 3)}, {BlobTree, treeJSON(3, 2)}},
		{{BlobData, []byte("ab")}, {BlobData, []byte("c")}},
		{{BlobData, companyJSON(1, 1)}},
	}
}

// blobArea returns the length of a pack's blob area according to its trailer.
func blobArea(plain []byte) int {
	n := binary.BigEndian.Uint32(plain[len(plain)-TrailerSize:])
	return len(plain) - TrailerSize - int(n)
}

// checkTiling checks what ParseIndex promises of entries it accepted: frames
// start where the previous one ends and cover the blob area, the blobs of a
// frame share its place and lie back to back in its raw bytes, and the frame
// limits hold.
func checkTiling(t testing.TB, plain []byte, entries []Entry) {
	t.Helper()
	var off uint64
	for _, f := range groupFrames(entries) {
		first := f[0]
		if first.Offset != off {
			t.Fatalf("frame at %d, want %d", first.Offset, off)
		}
		if first.FrameLength > MaxFrameLength || first.Length == 0 || first.Length > first.FrameLength+1 {
			t.Fatalf("frame at %d: stored %d, raw %d", first.Offset, first.Length, first.FrameLength)
		}
		if _, err := Blob(plain, first); err != nil {
			t.Fatal(err)
		}
		var skip uint64
		for _, e := range f {
			if e.Length != first.Length || e.FrameLength != first.FrameLength || e.Skip != skip {
				t.Fatalf("entry %+v in the frame at %d+%d, skip %d", e, first.Offset, first.Length, skip)
			}
			skip += e.RawLength
		}
		if skip != first.FrameLength {
			t.Fatalf("frame at %d: blobs hold %d raw bytes, FrameLength %d", first.Offset, skip, first.FrameLength)
		}
		off += first.Length
	}
	if off != uint64(blobArea(plain)) {
		t.Fatalf("frames cover %d bytes, blob area has %d", off, blobArea(plain))
	}
}

// checkFrames decompresses every frame of an accepted pack: that either fails
// with ErrCorrupt (the index cannot vouch for the stored bytes) or gives
// FrameLength bytes from which Extract takes every blob of the frame, and
// Find finds each blob (or an earlier one with the same ID and length).
func checkFrames(t testing.TB, plain []byte, entries []Entry) {
	t.Helper()
	for _, f := range groupFrames(entries) {
		stored, err := Blob(plain, f[0])
		if err != nil {
			t.Fatalf("accepted frame at %d+%d: %v", f[0].Offset, f[0].Length, err)
		}
		frame, err := Decompress(nil, stored, int(f[0].FrameLength))
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("Decompress error %v does not wrap ErrCorrupt", err)
			}
			continue
		}
		for _, e := range f {
			raw, err := Extract(frame, e)
			if err != nil || uint64(len(raw)) != e.RawLength {
				t.Fatalf("Extract(%+v) = %d bytes, %v", e, len(raw), err)
			}
			got, ok := Find(entries, e.Offset, e.ID, e.RawLength)
			if !ok || got.Offset != e.Offset || got.ID != e.ID || got.RawLength != e.RawLength || got.Skip > e.Skip {
				t.Fatalf("Find(%+v) = %+v, %v", e, got, ok)
			}
		}
	}
}

// remarshal rebuilds a pack from a parsed index with the Builder, passing
// each frame's stored form through unchanged.
func remarshal(plain []byte, entries []Entry) []byte {
	b := NewBuilder()
	for _, f := range groupFrames(entries) {
		stored, err := Blob(plain, f[0])
		if err != nil {
			panic(err)
		}
		members := make([]Member, len(f))
		for i, e := range f {
			members[i] = Member{Type: e.Type, ID: e.ID, RawLength: int(e.RawLength)}
		}
		b.AddFrame(stored, members)
	}
	return b.Finish()
}

// checkReencode checks that a pack ParseIndex accepted re-encodes to itself:
// byte for byte for version 2; for version 1, to the same bytes but for the
// version byte (a version 1 pack is a version 2 pack without continuation
// entries), and to the same entries.
func checkReencode(t testing.TB, plain []byte, entries []Entry) {
	t.Helper()
	again := remarshal(plain, entries)
	want := plain
	if v := plain[len(plain)-TrailerSize+4]; v == versionV1 {
		want = bytes.Clone(plain)
		want[len(want)-TrailerSize+4] = version
	}
	if !bytes.Equal(again, want) {
		i := 0
		for i < min(len(again), len(want)) && again[i] == want[i] {
			i++
		}
		t.Fatalf("parse → marshal differs: %d bytes in, %d out, first difference at byte %d", len(want), len(again), i)
	}
	if got, err := ParseIndex(again); err != nil || !slices.Equal(got, entries) {
		t.Fatalf("re-encoded pack parses to\n%+v, %v\nwant %+v", got, err, entries)
	}
}

func FuzzParseIndex(f *testing.F) {
	h := chunk.NewHasher(chunk.Key{5})
	plain, _ := buildPack(f, h, []blob{
		{BlobData, textLike(13, 2000)}, {BlobTree, []byte("tree")}, {BlobData, nil},
	})
	f.Add(plain)
	frames, _ := buildFrames(f, h, [][]blob{
		{{BlobData, textLike(17, 500)}, {BlobData, nil}, {BlobData, textLike(18, 300)}},
		{{BlobTree, []byte("tree")}, {BlobTree, []byte("tree")}},
		{{BlobData, []byte("a")}},
	})
	f.Add(frames)
	f.Add(rawPack(nil, []byte{0}, version, magic))
	f.Add(rawPack(nil, []byte{0}, versionV1, magic))
	f.Add(rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 2)...), version, magic))
	f.Add(rawPack([]byte{0, 'a', 'b'}, append([]byte{1}, entryBytes(BlobData, 3, 2)...), versionV1, magic))
	f.Add(rawPack([]byte{0, 'a', 'b', 'c'}, index(entryBytes(BlobData, 4, 2), entryBytes(BlobTree, 0, 1)), version, magic))
	for _, p := range []string{goldenV1Path, goldenV2Path} {
		if golden, err := os.ReadFile(p); err == nil {
			f.Add(golden)
		}
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		entries, err := ParseIndex(plain)
		if err != nil {
			if !errors.Is(err, wire.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		checkTiling(t, plain, entries)
		checkReencode(t, plain, entries)
		checkFrames(t, plain, entries)
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

var (
	// goldenV1Path is a version 1 pack, as existing repositories hold: never
	// rewritten.
	goldenV1Path = filepath.Join("..", "..", "testdata", "pack", "v1.pack")
	// goldenV2Path is a version 2 pack with multi-blob frames; -update
	// rewrites it.
	goldenV2Path = filepath.Join("..", "..", "testdata", "pack", "v2.pack")
)

// goldenKey keys the IDs of the golden packs' blobs.
var goldenKey = chunk.Key{'g', 'o', 'l', 'd', 'e', 'n'}

// goldenV2Frames are the frames of v2.pack: six company JSON documents in one
// zstd frame, 64 KiB of CSV text alone (zstd), 2000 random bytes alone (raw),
// two tree blobs in one zstd frame, and a raw frame of three blobs (48 random
// bytes, an empty blob, "x").
func goldenV2Frames() [][]blob {
	var companies []blob
	for i := range 6 {
		companies = append(companies, blob{BlobData, companyJSON(40, i)})
	}
	return [][]blob{
		companies,
		{{BlobData, textLike(41, 64<<10)}},
		{{BlobData, testenv.RandBytes(42, 2000)}},
		{{BlobTree, treeJSON(0, 6)}, {BlobTree, treeJSON(6, 4)}},
		{{BlobData, testenv.RandBytes(43, 48)}, {BlobData, nil}, {BlobData, []byte("x")}},
	}
}

// TestGolden checks that the committed packs keep parsing and decompressing
// to the same blobs, and re-encode to themselves (v1.pack to itself with
// version byte 2). Run with -update to rewrite v2.pack (then review and
// commit); v1.pack is what existing repositories hold and stays as it is.
func TestGolden(t *testing.T) {
	h := chunk.NewHasher(goldenKey)
	if *update {
		plain, _ := buildFrames(t, h, goldenV2Frames())
		testenv.WriteFile(t, goldenV2Path, plain)
	}
	tests := []struct {
		name    string
		path    string
		version byte
		frames  [][]blob
		codecs  []byte // of each frame's stored form
	}{
		{"v1", goldenV1Path, versionV1, oneBlobFrames(testBlobs()), []byte{CodecZstd, CodecRaw, CodecRaw, CodecRaw, CodecZstd}},
		{"v2", goldenV2Path, version, goldenV2Frames(), []byte{CodecZstd, CodecZstd, CodecRaw, CodecZstd, CodecRaw}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := testenv.ReadFile(t, tt.path)
			if v := plain[len(plain)-TrailerSize+4]; v != tt.version {
				t.Fatalf("version byte %d, want %d", v, tt.version)
			}
			entries, err := ParseIndex(plain)
			if err != nil {
				t.Fatal(err)
			}
			checkTiling(t, plain, entries)
			frames := groupFrames(entries)
			if len(frames) != len(tt.frames) {
				t.Fatalf("%d frames, want %d", len(frames), len(tt.frames))
			}
			for i, f := range frames {
				want := tt.frames[i]
				if len(f) != len(want) {
					t.Fatalf("frame %d: %d blobs, want %d", i, len(f), len(want))
				}
				codec, _, blobs := frameBlobs(t, plain, i, f)
				if codec != tt.codecs[i] {
					t.Errorf("frame %d: codec %d, want %d", i, codec, tt.codecs[i])
				}
				for j, e := range f {
					if e.Type != want[j].t || e.ID != h.Sum(want[j].raw) || !bytes.Equal(blobs[j], want[j].raw) {
						t.Errorf("frame %d blob %d differs from the expected content", i, j)
					}
				}
			}
			checkReencode(t, plain, entries)
		})
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

// TestSpecExample checks the worked examples in docs/spec/pack.md byte for
// byte: one blob alone, then two blobs in one frame.
func TestSpecExample(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{})
	hello, world := h.Sum([]byte("hello")), h.Sum([]byte("world"))
	t.Logf("ID(hello) = %x", hello[:])
	t.Logf("ID(world) = %x", world[:])

	b := NewBuilder()
	b.Add(BlobData, hello, Compress(nil, []byte("hello")), 5)
	got := b.Finish()
	want := []byte{0x00, 'h', 'e', 'l', 'l', 'o', 0x01, 0x01}
	want = append(want, hello[:]...)
	want = append(want, 0x06, 0x05, 0x00, 0x00, 0x00, 0x24, 0x02)
	want = append(want, "EMBPACK1"...)
	if !bytes.Equal(got, want) || len(got) != 55 {
		t.Fatalf("example pack:\n got %x\nwant %x", got, want)
	}
	// With version byte 01 it is a version 1 pack of the same blob.
	v1 := bytes.Clone(got)
	v1[len(v1)-TrailerSize+4] = versionV1
	if e, err := ParseIndex(v1); err != nil || len(e) != 1 || e[0].ID != hello {
		t.Fatalf("example pack as version 1: %+v, %v", e, err)
	}

	b.AddFrame(Compress(nil, []byte("helloworld")), []Member{
		{Type: BlobData, ID: hello, RawLength: 5},
		{Type: BlobData, ID: world, RawLength: 5},
	})
	got = b.Finish()
	want = []byte{0x00, 'h', 'e', 'l', 'l', 'o', 'w', 'o', 'r', 'l', 'd', 0x02, 0x01}
	want = append(want, hello[:]...)
	want = append(want, 0x0b, 0x05, 0x01)
	want = append(want, world[:]...)
	want = append(want, 0x00, 0x05, 0x00, 0x00, 0x00, 0x47, 0x02)
	want = append(want, "EMBPACK1"...)
	if !bytes.Equal(got, want) || len(got) != 95 {
		t.Fatalf("example frame pack:\n got %x\nwant %x", got, want)
	}
	entries, err := ParseIndex(got)
	if err != nil {
		t.Fatal(err)
	}
	wantEntries := []Entry{
		{Type: BlobData, ID: hello, Offset: 0, Length: 11, RawLength: 5, Skip: 0, FrameLength: 10},
		{Type: BlobData, ID: world, Offset: 0, Length: 11, RawLength: 5, Skip: 5, FrameLength: 10},
	}
	if !slices.Equal(entries, wantEntries) {
		t.Fatalf("example frame pack parses to\n%+v\nwant %+v", entries, wantEntries)
	}
	// A continuation entry is corrupt in a version 1 pack.
	v1 = bytes.Clone(got)
	v1[len(v1)-TrailerSize+4] = versionV1
	if e, err := ParseIndex(v1); !errors.Is(err, wire.ErrCorrupt) {
		t.Fatalf("example frame pack as version 1: %+v, %v; want ErrCorrupt", e, err)
	}
}

// BenchmarkCompressSmall compares compressing small files one blob at a time
// with compressing them as one frame (docs/spec/pack.md, "Frames"), on the
// same ~350-byte pretty-printed company JSON documents. blob/350B compresses
// one document per op, cycling through them (SetBytes is their mean length,
// the ratio is exact); frame/64KiB compresses all of them, concatenated to
// just under 64 KiB, per op.
func BenchmarkCompressSmall(b *testing.B) {
	var docs [][]byte
	var frame []byte
	for i := 0; ; i++ {
		d := companyJSON(60, i)
		if len(frame)+len(d) > 64<<10 {
			break
		}
		docs = append(docs, d)
		frame = append(frame, d...)
	}
	b.Run("blob/350B", func(b *testing.B) {
		dst := make([]byte, 0, 1024)
		var raw, stored int
		b.SetBytes(int64(len(frame) / len(docs)))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d := docs[i%len(docs)]
			i++
			raw += len(d)
			stored += len(Compress(dst[:0], d))
		}
		b.ReportMetric(float64(raw)/float64(stored), "ratio")
	})
	b.Run("frame/64KiB", func(b *testing.B) {
		dst := make([]byte, 0, len(frame)+64)
		var n int
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			n = len(Compress(dst[:0], frame))
		}
		b.ReportMetric(float64(len(frame))/float64(n), "ratio")
	})
}

// TestBuilderSizeWith: SizeWith before each AddFrame is exactly Size
// after it, and Finish's length, for frames of one and many members whose
// lengths cross the uvarint boundaries of the index; Entries are the
// entries added, in order.
func TestBuilderSizeWith(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	b := NewBuilder()
	var want []Entry
	for i := range 300 {
		members := make([]Member, 1+rng.IntN(4)*rng.IntN(40))
		raw := 0
		for j := range members {
			members[j] = Member{Type: BlobData, ID: chunk.ID{byte(i), byte(j)}, RawLength: rng.IntN(1 << (1 + rng.IntN(17)))}
			raw += members[j].RawLength
		}
		stored := make([]byte, 1+rng.IntN(raw+1))
		predicted := b.SizeWith(len(stored), members)
		want = append(want, b.AddFrame(stored, members)...)
		if got := b.Size(); got != predicted {
			t.Fatalf("frame %d (%d members, %d stored bytes): SizeWith %d, Size after %d", i, len(members), len(stored), predicted, got)
		}
	}
	if !slices.Equal(b.Entries(), want) {
		t.Fatal("Entries differ from the entries AddFrame returned")
	}
	size := b.Size()
	if n := len(b.Finish()); n != size {
		t.Fatalf("Finish: %d bytes, Size said %d", n, size)
	}
}
