package pack

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/embassy-project/embassy/internal/chunk"
	"github.com/embassy-project/embassy/internal/wire"
)

// BlobType says what a blob holds.
type BlobType uint8

// Blob types.
const (
	BlobData BlobType = 1 // a chunk of file content
	BlobTree BlobType = 2 // a directory listing
)

func (t BlobType) valid() bool { return t == BlobData || t == BlobTree }

// String returns "data", "tree" or "type(N)".
func (t BlobType) String() string {
	switch t {
	case BlobData:
		return "data"
	case BlobTree:
		return "tree"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Limits of the pack format.
const (
	// MaxRawLength is the largest raw (decompressed) blob: chunk.MaxSize.
	// Tree blobs must be split to fit.
	MaxRawLength = chunk.MaxSize
	// MaxStoredLength is the largest stored form: one codec byte more than
	// the largest raw blob or frame.
	MaxStoredLength = MaxRawLength + 1
	// MaxFrameLength is the largest raw (decompressed) frame: the blobs of
	// one frame together are no longer than the largest blob.
	MaxFrameLength = MaxRawLength
	// MaxBlobs is the most blobs one pack may index. A 16 MiB pack reaches it
	// only with blobs of 16 bytes on average.
	MaxBlobs = 1 << 20
	// TrailerSize is the length of the fixed trailer at the end of a pack.
	TrailerSize = 4 + 1 + len(magic)

	magic = "EMBPACK1"
	// version is what Builder writes: 2, frames of several blobs. Readers
	// also accept version 1, where every blob is its own frame.
	version   = 2
	versionV1 = 1

	// minEntrySize is the shortest encoded index entry: type, ID, two
	// one-byte varints.
	minEntrySize = 1 + idSize + 1 + 1
	// maxIndexLength bounds the index: MaxBlobs entries of the longest form.
	maxIndexLength = 3 + MaxBlobs*(1+idSize+4+4)

	idSize = 32 // len(chunk.ID{}), as an untyped constant

	minGrow = 64 << 10 // first allocation of a Builder's buffer
)

var _ [idSize]byte = chunk.ID{} // idSize must track chunk.ID

// Entry locates one blob in a pack. A blob lives in a frame: one stored
// (compressed) form holding the raw bytes of one or more blobs back to back.
type Entry struct {
	Type BlobType
	ID   chunk.ID
	// Offset and Length locate the stored form of the blob's frame within
	// the pack plaintext. Every blob of a frame has the same Offset and Length.
	Offset, Length uint64
	// RawLength is the length of the blob once decompressed.
	RawLength uint64
	// Skip is where the blob starts in its frame's raw bytes, and
	// FrameLength the length of those raw bytes (the frame's decompressed
	// length). A blob alone in its frame has Skip 0 and FrameLength equal
	// to RawLength.
	Skip, FrameLength uint64
}

// Member is one blob of a frame being added: its type, ID and raw length.
// The frame's raw bytes are its members' raw bytes in order.
type Member struct {
	Type      BlobType
	ID        chunk.ID
	RawLength int
}

// Builder assembles a pack plaintext. The zero value is not usable; call
// NewBuilder.
type Builder struct {
	buf      []byte  // stored blobs so far
	entries  []Entry // their index entries
	indexLen int     // encoded length of entries (without the count)
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{} }

// NewBuilderSize returns an empty Builder whose buffer is preallocated to
// capacity bytes, so a pack filled to a known target does not double its
// buffer on the way there.
func NewBuilderSize(capacity int) *Builder { return &Builder{buf: make([]byte, 0, capacity)} }

// NewBuilderBuffer returns an empty Builder that fills buf[:0] first, e.g. the
// plaintext of a pack already sealed, so packs reuse one buffer.
func NewBuilderBuffer(buf []byte) *Builder { return &Builder{buf: buf[:0]} }

// Add appends the stored form of a blob (as made by Compress) as a frame of
// its own and returns its index entry. It panics on arguments no caller
// should pass: an unknown type, an empty stored form, a raw length above
// MaxRawLength, a stored form longer than rawLen+1, or a pack already holding
// MaxBlobs blobs. Callers cut packs by Size and Count well before those
// limits.
func (b *Builder) Add(t BlobType, id chunk.ID, stored []byte, rawLen int) Entry {
	return b.AddFrame(stored, []Member{{Type: t, ID: id, RawLength: rawLen}})[0]
}

// AddFrame appends one frame: stored is the stored form (as made by
// Compress) of the members' raw bytes concatenated in order. It returns the
// members' index entries: a view of the Builder's own, valid until its next
// call and not to be modified (appending to it is safe). A copy per frame was
// ~40 MB of garbage in a 1 GB backup.
// It panics like Add, and also on an empty member list or a frame whose raw
// length exceeds MaxFrameLength.
func (b *Builder) AddFrame(stored []byte, members []Member) []Entry {
	frameLen := 0
	for _, m := range members {
		switch {
		case !m.Type.valid():
			panic(fmt.Sprintf("pack: add blob of %v", m.Type))
		case m.RawLength < 0 || m.RawLength > MaxRawLength:
			panic(fmt.Sprintf("pack: add blob of raw length %d", m.RawLength))
		}
		frameLen += m.RawLength
	}
	switch {
	case len(members) == 0:
		panic("pack: add a frame of no blobs")
	case frameLen > MaxFrameLength:
		panic(fmt.Sprintf("pack: add a frame of raw length %d", frameLen))
	case len(stored) == 0 || len(stored) > frameLen+1:
		panic(fmt.Sprintf("pack: add stored form of %d bytes for %d raw bytes", len(stored), frameLen))
	case len(b.entries)+len(members) > MaxBlobs:
		panic("pack: add blob to a full pack")
	}
	off := uint64(len(b.buf))
	if cap(b.buf)-len(b.buf) < len(stored) {
		// Double rather than let append grow large slices by 1.25×: a 16 MiB
		// pack then costs a handful of copies instead of a dozen.
		b.buf = slices.Grow(b.buf, max(len(stored), cap(b.buf), minGrow))
	}
	b.buf = append(b.buf, stored...)
	start := len(b.entries)
	var skip uint64
	for i, m := range members {
		e := Entry{Type: m.Type, ID: m.ID, Offset: off, Length: uint64(len(stored)), RawLength: uint64(m.RawLength),
			Skip: skip, FrameLength: uint64(frameLen)}
		skip += e.RawLength
		b.entries = append(b.entries, e)
		b.indexLen += entrySize(e, i == 0)
	}
	return b.entries[start:len(b.entries):len(b.entries)]
}

// SizeWith returns the length Finish would return after AddFrame of a
// stored form of storedLen bytes holding members, without adding it: a
// writer can close a pack before a frame would take it past a size.
func (b *Builder) SizeWith(storedLen int, members []Member) int {
	n, idx := len(b.entries)+len(members), b.indexLen
	for i, m := range members {
		idx += entrySize(Entry{ID: m.ID, Length: uint64(storedLen), RawLength: uint64(m.RawLength)}, i == 0)
	}
	return len(b.buf) + storedLen + uvarintLen(uint64(n)) + idx + TrailerSize
}

// Grow makes room for n more index entries, so a pack filled to a known
// count does not grow its index on the way there.
func (b *Builder) Grow(n int) { b.entries = slices.Grow(b.entries, n) }

// Entries returns the index entries of the blobs added so far, in order. The
// slice is the Builder's own until Finish or Reset, which drop it; then it
// belongs to the caller. It must not be modified before then.
func (b *Builder) Entries() []Entry { return b.entries }

// Count returns the number of blobs added.
func (b *Builder) Count() int { return len(b.entries) }

// Size returns the length Finish would return now: blobs, index and trailer.
func (b *Builder) Size() int {
	return len(b.buf) + uvarintLen(uint64(len(b.entries))) + b.indexLen + TrailerSize
}

// Finish returns the pack plaintext (blobs || index || trailer) and empties
// the Builder, which can then build the next pack. The returned slice belongs
// to the caller.
func (b *Builder) Finish() []byte {
	w := wire.NewWriter(b.buf)
	start := w.Len()
	w.Uvarint(uint64(len(b.entries)))
	for i, e := range b.entries {
		w.Byte(byte(e.Type))
		w.Fixed(e.ID[:])
		// Frames never share an offset (a stored form is at least a byte),
		// so a new offset starts a frame.
		if i == 0 || e.Offset != b.entries[i-1].Offset {
			w.Uvarint(e.Length)
		} else {
			w.Uvarint(0) // the frame goes on
		}
		w.Uvarint(e.RawLength)
	}
	w.Uint32(uint32(w.Len() - start))
	w.Byte(version)
	w.Fixed([]byte(magic))
	out := w.Bytes()
	b.Reset()
	return out
}

// Reset empties the Builder, dropping anything added.
func (b *Builder) Reset() { *b = Builder{} }

// entrySize is the encoded length of e, first in its frame or not.
func entrySize(e Entry, first bool) int {
	n := 1 + len(e.ID) + uvarintLen(e.RawLength)
	if first {
		return n + uvarintLen(e.Length)
	}
	return n + 1
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// trailer checks the trailer of plain and returns the index, the length of
// the blob area and the format version.
func trailer(plain []byte) (index []byte, blobEnd int, ver byte, err error) {
	if len(plain) < TrailerSize {
		return nil, 0, 0, wire.Corruptf("pack: %d bytes, shorter than the trailer", len(plain))
	}
	t := wire.NewReader(plain[len(plain)-TrailerSize:], "pack trailer")
	n := t.Uint32()
	v := t.Byte()
	t.Magic(magic)
	if err := t.Done(); err != nil {
		return nil, 0, 0, err
	}
	if v != version && v != versionV1 {
		return nil, 0, 0, wire.Corruptf("pack: unknown version %d", v)
	}
	rest := len(plain) - TrailerSize
	if uint64(n) > uint64(rest) || uint64(n) > maxIndexLength {
		return nil, 0, 0, wire.Corruptf("pack: index length %d does not fit %d bytes", n, rest)
	}
	return plain[rest-int(n) : rest], rest - int(n), v, nil
}

// ParseIndex reads the index of a pack plaintext (version 1 or 2). It checks
// that every entry has a known type and lengths within the limits, and that
// the frames tile the blob area exactly: each starts where the previous one
// ends and the last ends where the index begins, so frames never overlap and
// no byte is unaccounted for; a frame's stored form is at most one byte
// longer than its blobs' raw bytes together. The same ID may appear twice
// (deduplication is the writer's business, not a format rule). Errors wrap
// wire.ErrCorrupt.
func ParseIndex(plain []byte) ([]Entry, error) {
	index, blobEnd, ver, err := trailer(plain)
	if err != nil {
		return nil, err
	}
	r := wire.NewReader(index, "pack index")
	count := r.UvarintMax(MaxBlobs, "blob count")
	if r.Err() == nil && count > uint64(r.Remaining()/minEntrySize) {
		r.Failf("%d entries cannot fit in %d bytes", count, r.Remaining())
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, count)
	var off uint64      // where the next frame starts
	frame := 0          // index of the current frame's first entry
	var frameLen uint64 // raw bytes of the current frame so far
	closeFrame := func() {
		if len(entries) == 0 {
			return
		}
		f := entries[frame:]
		switch {
		case frameLen > MaxFrameLength:
			r.Failf("entry %d: frame of %d raw bytes, more than %d", frame, frameLen, MaxFrameLength)
		case f[0].Length > frameLen+1:
			r.Failf("entry %d: stored length %d for raw length %d", frame, f[0].Length, frameLen)
		}
		for i := range f {
			f[i].FrameLength = frameLen
		}
	}
	for i := uint64(0); i < count; i++ {
		var e Entry
		e.Type = BlobType(r.Byte())
		r.FixedInto(e.ID[:])
		e.Length = r.UvarintMax(MaxStoredLength, "stored length")
		e.RawLength = r.UvarintMax(MaxRawLength, "raw length")
		if r.Err() != nil {
			break
		}
		if !e.Type.valid() {
			r.Failf("entry %d: unknown blob type %d", i, e.Type)
			break
		}
		if e.Length == 0 {
			// The blob goes on in the previous entry's frame.
			if ver == versionV1 || i == 0 {
				r.Failf("entry %d: stored length 0", i)
				break
			}
			prev := entries[len(entries)-1]
			e.Offset, e.Length, e.Skip = prev.Offset, prev.Length, frameLen
		} else {
			closeFrame()
			if e.Length > uint64(blobEnd)-off {
				r.Failf("entry %d: frame at %d+%d runs past the blob area (%d bytes)", i, off, e.Length, blobEnd)
			}
			frame, frameLen = len(entries), 0
			e.Offset = off
			off += e.Length
		}
		if r.Err() != nil {
			break
		}
		frameLen += e.RawLength
		entries = append(entries, e)
	}
	if r.Err() == nil {
		closeFrame()
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if off != uint64(blobEnd) {
		return nil, wire.Corruptf("pack: frames cover %d bytes, blob area has %d", off, blobEnd)
	}
	return entries, nil
}

// Blob returns the stored form of the frame holding blob e within a pack
// plaintext (a sub-slice of plain), after checking that it lies inside the
// blob area. Decompress it to e.FrameLength bytes and take the blob with
// Extract. Errors wrap wire.ErrCorrupt.
func Blob(plain []byte, e Entry) ([]byte, error) {
	_, blobEnd, _, err := trailer(plain)
	if err != nil {
		return nil, err
	}
	end := uint64(blobEnd)
	if e.Length == 0 || e.Offset > end || e.Length > end-e.Offset {
		return nil, wire.Corruptf("pack: blob %s at %d+%d outside the blob area (%d bytes)", e.ID, e.Offset, e.Length, blobEnd)
	}
	return plain[e.Offset : e.Offset+e.Length : e.Offset+e.Length], nil
}

// Extract returns blob e from its frame's raw bytes (a sub-slice of frame),
// after checking that the frame has e.FrameLength bytes and holds e.
// Errors wrap wire.ErrCorrupt.
func Extract(frame []byte, e Entry) ([]byte, error) {
	if uint64(len(frame)) != e.FrameLength || e.Skip > e.FrameLength || e.RawLength > e.FrameLength-e.Skip {
		return nil, wire.Corruptf("pack: blob %s at %d+%d outside its frame of %d bytes (%d expected)",
			e.ID, e.Skip, e.RawLength, len(frame), e.FrameLength)
	}
	return frame[e.Skip : e.Skip+e.RawLength : e.Skip+e.RawLength], nil
}

// Find returns the entry of blob id of raw length rawLen in the frame stored
// at offset, from entries as ParseIndex returns them (sorted by offset).
func Find(entries []Entry, offset uint64, id chunk.ID, rawLen uint64) (Entry, bool) {
	i, _ := slices.BinarySearchFunc(entries, offset, func(e Entry, off uint64) int { return cmp.Compare(e.Offset, off) })
	for ; i < len(entries) && entries[i].Offset == offset; i++ {
		if entries[i].ID == id && entries[i].RawLength == rawLen {
			return entries[i], true
		}
	}
	return Entry{}, false
}
