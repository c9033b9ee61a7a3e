package pack

import (
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
	// the largest raw blob.
	MaxStoredLength = MaxRawLength + 1
	// MaxBlobs is the most blobs one pack may index. A 16 MiB pack reaches it
	// only with blobs of 16 bytes on average.
	MaxBlobs = 1 << 20
	// TrailerSize is the length of the fixed trailer at the end of a pack.
	TrailerSize = 4 + 1 + len(magic)

	magic   = "EMBPACK1"
	version = 1

	// minEntrySize is the shortest encoded index entry: type, ID, two
	// one-byte varints.
	minEntrySize = 1 + idSize + 1 + 1
	// maxIndexLength bounds the index: MaxBlobs entries of the longest form.
	maxIndexLength = 3 + MaxBlobs*(1+idSize+4+4)

	idSize = 32 // len(chunk.ID{}), as an untyped constant

	minGrow = 64 << 10 // first allocation of a Builder's buffer
)

var _ [idSize]byte = chunk.ID{} // idSize must track chunk.ID

// Entry locates one blob in a pack.
type Entry struct {
	Type BlobType
	ID   chunk.ID
	// Offset and Length locate the stored form within the pack plaintext.
	Offset, Length uint64
	// RawLength is the length of the blob once decompressed.
	RawLength uint64
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

// Add appends the stored form of a blob (as made by Compress) and returns its
// index entry. It panics on arguments no caller should pass: an unknown type,
// an empty stored form, a raw length above MaxRawLength, a stored form longer
// than rawLen+1, or a pack already holding MaxBlobs blobs. Callers cut packs
// by Size and Count well before those limits.
func (b *Builder) Add(t BlobType, id chunk.ID, stored []byte, rawLen int) Entry {
	switch {
	case !t.valid():
		panic(fmt.Sprintf("pack: add blob of %v", t))
	case rawLen < 0 || rawLen > MaxRawLength:
		panic(fmt.Sprintf("pack: add blob of raw length %d", rawLen))
	case len(stored) == 0 || len(stored) > rawLen+1:
		panic(fmt.Sprintf("pack: add stored form of %d bytes for %d raw bytes", len(stored), rawLen))
	case len(b.entries) >= MaxBlobs:
		panic("pack: add blob to a full pack")
	}
	e := Entry{Type: t, ID: id, Offset: uint64(len(b.buf)), Length: uint64(len(stored)), RawLength: uint64(rawLen)}
	if cap(b.buf)-len(b.buf) < len(stored) {
		// Double rather than let append grow large slices by 1.25×: a 16 MiB
		// pack then costs a handful of copies instead of a dozen.
		b.buf = slices.Grow(b.buf, max(len(stored), cap(b.buf), minGrow))
	}
	b.buf = append(b.buf, stored...)
	b.entries = append(b.entries, e)
	b.indexLen += entrySize(e)
	return e
}

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
	for _, e := range b.entries {
		w.Byte(byte(e.Type))
		w.Fixed(e.ID[:])
		w.Uvarint(e.Length)
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

func entrySize(e Entry) int {
	return 1 + len(e.ID) + uvarintLen(e.Length) + uvarintLen(e.RawLength)
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// trailer checks the trailer of plain and returns the index and the length of
// the blob area.
func trailer(plain []byte) (index []byte, blobEnd int, err error) {
	if len(plain) < TrailerSize {
		return nil, 0, wire.Corruptf("pack: %d bytes, shorter than the trailer", len(plain))
	}
	t := wire.NewReader(plain[len(plain)-TrailerSize:], "pack trailer")
	n := t.Uint32()
	v := t.Byte()
	t.Magic(magic)
	if err := t.Done(); err != nil {
		return nil, 0, err
	}
	if v != version {
		return nil, 0, wire.Corruptf("pack: unknown version %d", v)
	}
	rest := len(plain) - TrailerSize
	if uint64(n) > uint64(rest) || uint64(n) > maxIndexLength {
		return nil, 0, wire.Corruptf("pack: index length %d does not fit %d bytes", n, rest)
	}
	return plain[rest-int(n) : rest], rest - int(n), nil
}

// ParseIndex reads the index of a pack plaintext. It checks that every entry
// has a known type and lengths within the limits, and that the blobs tile the
// blob area exactly: each starts where the previous one ends and the last ends
// where the index begins, so blobs never overlap and no byte is unaccounted
// for. The same ID may appear twice (deduplication is the writer's business,
// not a format rule). Errors wrap wire.ErrCorrupt.
func ParseIndex(plain []byte) ([]Entry, error) {
	index, blobEnd, err := trailer(plain)
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
	var off uint64
	for i := uint64(0); i < count; i++ {
		var e Entry
		e.Type = BlobType(r.Byte())
		r.FixedInto(e.ID[:])
		e.Length = r.UvarintMax(MaxStoredLength, "stored length")
		e.RawLength = r.UvarintMax(MaxRawLength, "raw length")
		if r.Err() != nil {
			break
		}
		switch {
		case !e.Type.valid():
			r.Failf("entry %d: unknown blob type %d", i, e.Type)
		case e.Length == 0 || e.Length > e.RawLength+1:
			r.Failf("entry %d: stored length %d for raw length %d", i, e.Length, e.RawLength)
		case e.Length > uint64(blobEnd)-off:
			r.Failf("entry %d: blob at %d+%d runs past the blob area (%d bytes)", i, off, e.Length, blobEnd)
		}
		if r.Err() != nil {
			break
		}
		e.Offset = off
		off += e.Length
		entries = append(entries, e)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if off != uint64(blobEnd) {
		return nil, wire.Corruptf("pack: blobs cover %d bytes, blob area has %d", off, blobEnd)
	}
	return entries, nil
}

// Blob returns the stored form of the blob e within a pack plaintext (a
// sub-slice of plain), after checking that e lies inside the blob area.
// Errors wrap wire.ErrCorrupt.
func Blob(plain []byte, e Entry) ([]byte, error) {
	_, blobEnd, err := trailer(plain)
	if err != nil {
		return nil, err
	}
	end := uint64(blobEnd)
	if e.Length == 0 || e.Offset > end || e.Length > end-e.Offset {
		return nil, wire.Corruptf("pack: blob %s at %d+%d outside the blob area (%d bytes)", e.ID, e.Offset, e.Length, blobEnd)
	}
	return plain[e.Offset : e.Offset+e.Length : e.Offset+e.Length], nil
}
