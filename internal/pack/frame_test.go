package pack

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/testenv"
	"github.com/embassy-project/embassy/internal/wire"
)

// roundTripFrames are frames of every shape: those of the golden pack, a
// frame at exactly MaxFrameLength, a frame of empty blobs, one blob as data
// and as tree in one frame, and blobs repeated within and across frames.
func roundTripFrames() [][]blob {
	zeros := make([]byte, MaxFrameLength)
	a, b := companyJSON(70, 0), companyJSON(70, 1)
	return append(goldenV2Frames(),
		[]blob{{BlobData, zeros[:MaxFrameLength-1]}, {BlobData, zeros[:1]}},
		[]blob{{BlobData, nil}, {BlobTree, nil}},
		[]blob{{BlobTree, []byte("x")}, {BlobData, []byte("x")}},
		[]blob{{BlobData, a}, {BlobData, b}, {BlobData, a}},
		[]blob{{BlobData, b}, {BlobData, a}},
	)
}

func TestAddFrameRoundTrip(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{6})
	all := roundTripFrames()
	for n := 0; n <= len(all); n++ {
		frames := all[:n]
		plain, want := buildFrames(t, h, frames)
		got, err := ParseIndex(plain)
		if err != nil {
			t.Fatalf("%d frames: %v", n, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d frames: index\n got %+v\nwant %+v", n, got, want)
		}
		checkTiling(t, plain, got)
		checkReencode(t, plain, got)
		grouped := groupFrames(got)
		if len(grouped) != len(frames) {
			t.Fatalf("%d frames: index has %d", n, len(grouped))
		}
		for i, f := range grouped {
			_, raw, blobs := frameBlobs(t, plain, i, f)
			for j, e := range f {
				blob := blobs[j]
				if !bytes.Equal(blob, frames[i][j].raw) || e.ID != h.Sum(blob) || e.Type != frames[i][j].t {
					t.Fatalf("frame %d blob %d differs", i, j)
				}
				if cap(blob) != len(blob) {
					t.Fatalf("frame %d blob %d: Extract result has spare capacity %d over its frame", i, j, cap(blob)-len(blob))
				}
				// Find gives this entry, or an earlier one of the frame with
				// the same ID and length (the same bytes).
				found, ok := Find(got, e.Offset, e.ID, e.RawLength)
				if !ok || found.Offset != e.Offset || found.ID != e.ID || found.Skip > e.Skip {
					t.Fatalf("frame %d blob %d: Find = %+v, %v", i, j, found, ok)
				}
				if fb, err := Extract(raw, found); err != nil || !bytes.Equal(fb, blob) {
					t.Fatalf("frame %d blob %d: found entry extracts to other bytes (%v)", i, j, err)
				}
			}
		}
	}
}

// TestAddIsOneBlobFrame checks that Add is AddFrame of one member, and that
// appending to the entries AddFrame returns leaves the Builder's alone.
func TestAddIsOneBlobFrame(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{7})
	blobs := testBlobs()
	byAdd, byFrame := NewBuilder(), NewBuilder()
	for _, bl := range blobs {
		stored := Compress(nil, bl.raw)
		e := byAdd.Add(bl.t, h.Sum(bl.raw), stored, len(bl.raw))
		es := byFrame.AddFrame(stored, []Member{{Type: bl.t, ID: h.Sum(bl.raw), RawLength: len(bl.raw)}})
		if len(es) != 1 || es[0] != e {
			t.Fatalf("AddFrame = %+v, Add = %+v", es, e)
		}
		_ = append(es, Entry{Offset: 1 << 40})
	}
	if a, f := byAdd.Finish(), byFrame.Finish(); !bytes.Equal(a, f) {
		t.Fatal("Add and one-member AddFrame build different packs")
	}
}

func TestAddFramePanics(t *testing.T) {
	data := func(n int) Member { return Member{Type: BlobData, RawLength: n} }
	tooMany := make([]Member, MaxBlobs+1)
	for i := range tooMany {
		tooMany[i] = data(0)
	}
	tests := []struct {
		name    string
		before  int // one-byte blobs added first
		stored  []byte
		members []Member
	}{
		{"nil members", 0, []byte{CodecRaw}, nil},
		{"no members", 0, []byte{CodecRaw}, []Member{}},
		{"frame raw above MaxFrameLength", 0, []byte{CodecZstd, 0}, []Member{data(MaxRawLength), data(1)}},
		{"frame raw above MaxFrameLength, many blobs", 0, []byte{CodecZstd, 0}, []Member{data(MaxRawLength / 2), data(MaxRawLength / 2), data(1)}},
		{"stored longer than frame raw+1", 0, []byte{CodecRaw, 'a', 'b', 'c'}, []Member{data(1), data(1)}},
		{"stored longer than frame raw+1, empty blobs", 0, []byte{CodecRaw, 0}, []Member{data(0), data(0)}},
		{"empty stored", 0, nil, []Member{data(1), data(1)}},
		{"member type 0", 0, []byte{CodecRaw, 'a', 'b'}, []Member{data(1), {Type: 0, RawLength: 1}}},
		{"member type 3", 0, []byte{CodecRaw, 'a', 'b'}, []Member{data(1), {Type: 3, RawLength: 1}}},
		{"member raw negative", 0, []byte{CodecRaw, 'a'}, []Member{data(2), data(-1)}},
		{"member raw above MaxRawLength", 0, []byte{CodecZstd, 0}, []Member{data(MaxRawLength + 1)}},
		{"more than MaxBlobs", 0, []byte{CodecRaw}, tooMany},
		{"more than MaxBlobs with the pack's", 1, []byte{CodecRaw}, tooMany[:MaxBlobs]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder()
			for i := range tt.before {
				b.Add(BlobData, chunk.ID{byte(i)}, []byte{CodecRaw, 'z'}, 1)
			}
			count, size := b.Count(), b.Size()
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("AddFrame did not panic")
					}
				}()
				b.AddFrame(tt.stored, tt.members)
			}()
			// The panic leaves the Builder as it was.
			if b.Count() != count || b.Size() != size {
				t.Fatalf("after the panic: Count %d Size %d, want %d %d", b.Count(), b.Size(), count, size)
			}
			if e, err := ParseIndex(b.Finish()); err != nil || len(e) != count {
				t.Fatalf("pack after the panic: %d entries, %v", len(e), err)
			}
		})
	}
}

// TestParseIndexFrames checks hand-made packs with frames of several blobs:
// the well-formed ones parse to the expected entries and re-encode to
// themselves, the others are refused with ErrCorrupt.
func TestParseIndexFrames(t *testing.T) {
	data := func(stored, raw uint64) []byte { return entryBytes(BlobData, stored, raw) }
	e := func(off, length, raw, skip, frame uint64) Entry {
		return Entry{Type: BlobData, Offset: off, Length: length, RawLength: raw, Skip: skip, FrameLength: frame}
	}
	tests := []struct {
		name  string
		plain []byte
		want  []Entry // nil: ParseIndex must refuse the pack
	}{
		{"two-blob frame", rawPack([]byte{0, 'a', 'b', 'c'}, index(data(4, 2), data(0, 1)), version, magic),
			[]Entry{e(0, 4, 2, 0, 3), e(0, 4, 1, 2, 3)}},
		{"frame of empty blobs", rawPack([]byte{0}, index(data(1, 0), data(0, 0), data(0, 0)), version, magic),
			[]Entry{e(0, 1, 0, 0, 0), e(0, 1, 0, 0, 0), e(0, 1, 0, 0, 0)}},
		{"frame at MaxFrameLength", rawPack([]byte{1, 0}, index(data(2, MaxRawLength-1), data(0, 1)), version, magic),
			[]Entry{e(0, 2, MaxRawLength-1, 0, MaxFrameLength), e(0, 2, 1, MaxRawLength-1, MaxFrameLength)}},
		{"stored at frame raw+1", rawPack([]byte{0, 'a', 'b'}, index(data(3, 1), data(0, 1)), version, magic),
			[]Entry{e(0, 3, 1, 0, 2), e(0, 3, 1, 1, 2)}},
		{"one-blob frame then a two-blob frame", rawPack([]byte{0, 'a', 0, 'b', 'c'}, index(data(2, 1), data(3, 1), data(0, 1)), version, magic),
			[]Entry{e(0, 2, 1, 0, 1), e(2, 3, 1, 0, 2), e(2, 3, 1, 1, 2)}},
		{"v1 one-blob frames", rawPack([]byte{0, 'a', 0, 'b'}, index(data(2, 1), data(2, 1)), versionV1, magic),
			[]Entry{e(0, 2, 1, 0, 1), e(2, 2, 1, 0, 1)}},

		{"continuation first", rawPack(nil, index(data(0, 0)), version, magic), nil},
		{"continuation first, then a frame", rawPack([]byte{0, 'a'}, index(data(0, 1), data(2, 1)), version, magic), nil},
		{"continuation in v1", rawPack([]byte{0, 'a', 'b', 'c'}, index(data(4, 2), data(0, 1)), versionV1, magic), nil},
		{"frame raw above MaxFrameLength", rawPack([]byte{1, 0}, index(data(2, MaxRawLength), data(0, 1)), version, magic), nil},
		{"frame raw above MaxFrameLength, not last", rawPack([]byte{1, 0, 0, 'b'}, index(data(2, MaxRawLength), data(0, 1), data(2, 1)), version, magic), nil},
		{"frame raw above MaxFrameLength, three blobs", rawPack([]byte{1, 0}, index(data(2, MaxRawLength/2), data(0, MaxRawLength/2), data(0, 1)), version, magic), nil},
		{"frame stored longer than raw+1", rawPack([]byte{0, 'a', 'b', 'c'}, index(data(4, 1), data(0, 1)), version, magic), nil},
		{"frame stored longer than raw+1, not last", rawPack([]byte{0, 'a', 'b', 'c', 0, 'x'}, index(data(4, 1), data(0, 1), data(2, 1)), version, magic), nil},
		{"frame of empty blobs stored in 2 bytes", rawPack([]byte{0, 0}, index(data(2, 0), data(0, 0)), version, magic), nil},
		{"frame past area", rawPack([]byte{0, 'a', 'b'}, index(data(5, 2), data(0, 2)), version, magic), nil},
		{"second frame past area", rawPack([]byte{0, 'a', 0, 'b'}, index(data(2, 1), data(3, 1), data(0, 1)), version, magic), nil},
		{"gap after frames", rawPack([]byte{0, 'a', 'b', 'c', 'x'}, index(data(4, 2), data(0, 1)), version, magic), nil},
		{"continuation of unknown type", rawPack([]byte{0, 'a', 'b', 'c'}, index(data(4, 2), entryBytes(3, 0, 1)), version, magic), nil},
		{"continuation raw above MaxRawLength", rawPack([]byte{0, 'a'}, index(data(2, 1), data(0, MaxRawLength+1)), version, magic), nil},
		{"continuation truncated", rawPack([]byte{0, 'a', 'b', 'c'}, index(data(4, 2), data(0, 1))[:50], version, magic), nil},
		{"continuation then trailing bytes", rawPack([]byte{0, 'a', 'b', 'c'}, append(index(data(4, 2), data(0, 1)), 0), version, magic), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIndex(tt.plain)
			if tt.want == nil {
				if !errors.Is(err, wire.ErrCorrupt) {
					t.Fatalf("ParseIndex = %+v, %v; want ErrCorrupt", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseIndex =\n%+v\nwant\n%+v", got, tt.want)
			}
			checkTiling(t, tt.plain, got)
			checkReencode(t, tt.plain, got)
		})
	}
}

func TestExtractErrors(t *testing.T) {
	frame := []byte("abcde")
	e := func(skip, raw, frameLen uint64) Entry {
		return Entry{Skip: skip, RawLength: raw, FrameLength: frameLen}
	}
	tests := []struct {
		name  string
		frame []byte
		e     Entry
	}{
		{"frame shorter than FrameLength", frame[:4], e(0, 1, 5)},
		{"frame longer than FrameLength", frame, e(0, 1, 4)},
		{"empty frame, FrameLength 1", nil, e(0, 0, 1)},
		{"skip past frame", frame, e(6, 0, 5)},
		{"blob past frame", frame, e(3, 3, 5)},
		{"blob longer than frame", frame, e(0, 6, 5)},
		{"huge skip", frame, e(^uint64(0), 1, 5)},
		{"huge raw length", frame, e(1, ^uint64(0), 5)},
		{"skip+raw overflows", frame, e(2, ^uint64(0)-1, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Extract(tt.frame, tt.e); !errors.Is(err, wire.ErrCorrupt) || b != nil {
				t.Fatalf("Extract = %q, %v; want nil, ErrCorrupt", b, err)
			}
		})
	}
	// The edges of the frame are inside it.
	for _, tt := range []struct {
		e    Entry
		want string
	}{
		{e(0, 5, 5), "abcde"}, {e(0, 0, 5), ""}, {e(5, 0, 5), ""}, {e(4, 1, 5), "e"}, {e(1, 3, 5), "bcd"},
	} {
		if b, err := Extract(frame, tt.e); err != nil || string(b) != tt.want {
			t.Errorf("Extract(%d+%d) = %q, %v; want %q", tt.e.Skip, tt.e.RawLength, b, err, tt.want)
		}
	}
	if b, err := Extract(nil, e(0, 0, 0)); err != nil || len(b) != 0 {
		t.Errorf("Extract of an empty blob from an empty frame = %q, %v", b, err)
	}
}

// TestFind looks blobs up by (frame offset, ID, raw length) in a pack where
// the same blobs sit in several frames.
func TestFind(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{8})
	a, b, c := []byte("alpha"), []byte("bravo!"), testenv.RandBytes(19, 100)
	plain, entries := buildFrames(t, h, [][]blob{
		{{BlobData, a}, {BlobData, b}, {BlobData, c}},
		{{BlobData, c}},
		{{BlobData, b}, {BlobData, nil}, {BlobData, a}},
	})
	if _, err := ParseIndex(plain); err != nil {
		t.Fatal(err)
	}
	f0, f1, f2 := entries[0].Offset, entries[3].Offset, entries[4].Offset
	id := func(raw []byte) chunk.ID { return h.Sum(raw) }
	n := func(raw []byte) uint64 { return uint64(len(raw)) }
	hits := []struct {
		offset uint64
		raw    []byte
		want   Entry
	}{
		{f0, a, entries[0]}, {f0, b, entries[1]}, {f0, c, entries[2]},
		{f1, c, entries[3]},
		{f2, b, entries[4]}, {f2, nil, entries[5]}, {f2, a, entries[6]},
	}
	for _, tt := range hits {
		got, ok := Find(entries, tt.offset, id(tt.raw), n(tt.raw))
		if !ok || got != tt.want {
			t.Errorf("Find(%d, %q) = %+v, %v; want %+v", tt.offset, tt.raw, got, ok, tt.want)
		}
	}
	misses := []struct {
		name    string
		entries []Entry
		offset  uint64
		id      chunk.ID
		rawLen  uint64
	}{
		{"blob not in that frame", entries, f1, id(a), n(a)},
		{"empty blob not in that frame", entries, f0, id(nil), 0},
		{"offset inside a frame", entries, f0 + 1, id(a), n(a)},
		{"offset inside the last frame", entries, f2 + 1, id(a), n(a)},
		{"offset past the last frame", entries, f2 + entries[4].Length, id(a), n(a)},
		{"wrong raw length", entries, f0, id(a), n(a) + 1},
		{"raw length of another blob", entries, f0, id(a), n(b)},
		{"unknown ID", entries, f0, chunk.ID{1}, n(a)},
		{"no entries", nil, 0, id(a), n(a)},
	}
	for _, tt := range misses {
		t.Run(tt.name, func(t *testing.T) {
			if got, ok := Find(tt.entries, tt.offset, tt.id, tt.rawLen); ok {
				t.Fatalf("Find = %+v, want no entry", got)
			}
		})
	}
}

// TestFindEveryBlob looks up every blob of the round-trip pack by where a
// tree ref points: the frame's offset, the blob's ID and raw length.
func TestFindEveryBlob(t *testing.T) {
	h := chunk.NewHasher(chunk.Key{9})
	_, entries := buildFrames(t, h, roundTripFrames())
	for i, e := range entries {
		got, ok := Find(entries, e.Offset, e.ID, e.RawLength)
		if !ok {
			t.Fatalf("entry %d not found", i)
		}
		// The first entry of the frame with that ID and length.
		for _, prev := range entries[:i] {
			if prev.Offset == e.Offset && prev.ID == e.ID && prev.RawLength == e.RawLength {
				e = prev
				break
			}
		}
		if got != e {
			t.Fatalf("entry %d: Find = %+v, want %+v", i, got, e)
		}
	}
}
