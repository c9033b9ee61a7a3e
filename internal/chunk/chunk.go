package chunk

import (
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers "fastcdc-v1.0.0"
	"github.com/zeebo/blake3"

	"github.com/embassy-project/embassy/internal/wire"
)

// Chunk size parameters. They are part of the format (see the package
// comment): changing them changes every chunk ID.
//
// AvgSize 1 MiB keeps per-chunk overhead (index entry, tree reference, ID
// lookup) under 0.01% of the data and the number of chunks of a 1 TB dataset
// near one million, while edits still cost about one megabyte each. MinSize
// is AvgSize/4 so the cut-point search skips most of each chunk (FastCDC's
// main speed-up) without making chunks so coarse that small edits re-upload
// much. MaxSize is 4×AvgSize: the bound a chunk can reach in data with no cut
// point (zeros, sparse files), which also bounds the memory one chunk needs.
const (
	MinSize = 256 << 10
	AvgSize = 1 << 20
	MaxSize = 4 << 20
)

// BufferSize is the scan buffer NewChunker allocates when given none. Twice
// MaxSize lets the chunker refill in large strides instead of compacting
// after most chunks.
const BufferSize = 2 * MaxSize

// MinBufferSize is the smallest scan buffer NewChunker accepts: callers that
// run many chunkers at once trade some compaction for memory.
const MinBufferSize = MaxSize

const (
	algorithm        = "fastcdc-v1.0.0"
	chunkerKeyDomain = "embassy v1 chunker"
	idKeyDomain      = "embassy v1 chunk-id"
)

// ID names a chunk: the keyed BLAKE3-256 hash of its plaintext.
type ID [32]byte

// String returns the ID in lower-case hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the 64-character lower-case hex form of an ID. Errors wrap
// wire.ErrCorrupt.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, wire.Corruptf("chunk id: want %d hex characters, got %d", 2*len(id), len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, wire.Corruptf("chunk id: %v", err)
	}
	if id.String() != s {
		return ID{}, wire.Corruptf("chunk id: not lower-case hex")
	}
	return id, nil
}

// Key is a dataset's secret dedup key. It keys both the cut points and the
// chunk IDs. It must never reach a host.
type Key [32]byte

// Hasher computes chunk IDs under one key. It is safe for concurrent use.
type Hasher struct {
	pool sync.Pool // of *blake3.Hasher, each a clone of the prepared keyed hasher
}

// NewHasher returns a Hasher for key k.
func NewHasher(k Key) *Hasher {
	var idKey [32]byte
	blake3.DeriveKey(idKeyDomain, k[:], idKey[:])
	proto, err := blake3.NewKeyed(idKey[:])
	if err != nil {
		panic("chunk: blake3.NewKeyed rejected a 32-byte key: " + err.Error())
	}
	h := &Hasher{}
	h.pool.New = func() any { return proto.Clone() }
	return h
}

// Sum returns the ID of a chunk whose plaintext is data.
func (h *Hasher) Sum(data []byte) ID {
	b := h.pool.Get().(*blake3.Hasher)
	b.Reset()
	_, _ = b.Write(data)
	var id ID
	b.Sum(id[:0])
	h.pool.Put(b)
	return id
}

// Chunker cuts a stream into content-defined chunks. It is not safe for
// concurrent use; use one per goroutine.
type Chunker struct {
	c    *chunkers.Chunker
	done bool  // the underlying chunker has reported the last chunk
	err  error // sticky read error
}

// NewChunker returns a Chunker reading r, with cut points keyed by k. buf is
// the scan buffer: nil to allocate BufferSize bytes, or at least MinBufferSize bytes to reuse
// (the chunks returned by Next alias it).
func NewChunker(k Key, r io.Reader, buf []byte) (*Chunker, error) {
	if buf == nil {
		buf = make([]byte, BufferSize)
	}
	if len(buf) < MinBufferSize {
		return nil, fmt.Errorf("new chunker: buffer of %d bytes, need at least %d", len(buf), MinBufferSize)
	}
	var ck [32]byte
	blake3.DeriveKey(chunkerKeyDomain, k[:], ck[:])
	opts := &chunkers.ChunkerOpts{
		MinSize:    MinSize,
		MaxSize:    MaxSize,
		NormalSize: AvgSize,
		Key:        ck[:],
	}
	c, err := chunkers.NewChunkerBuffer(algorithm, r, opts, buf)
	if err != nil {
		return nil, fmt.Errorf("new chunker: %w", err)
	}
	return &Chunker{c: c}, nil
}

// Next returns the next chunk, or io.EOF after the last one. A zero-length
// stream yields no chunk. Every chunk but the last is between MinSize and
// MaxSize bytes; the last is between 1 and MaxSize. The slice is valid only
// until the next call to Next or Reset. A read error from the stream is
// returned wrapped (never as io.EOF).
func (c *Chunker) Next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.done {
		return nil, io.EOF
	}
	data, err := c.c.Next()
	switch {
	case err == nil:
	case err == io.EOF: // exact: the library compares with ==, a wrapped EOF is a read error
		// The library reports the last chunk together with io.EOF; hand it
		// out alone and report io.EOF on the following call.
		c.done = true
		if len(data) == 0 {
			return nil, io.EOF
		}
	default:
		c.err = fmt.Errorf("chunk: read input: %w", err)
		return nil, c.err
	}
	if len(data) == 0 {
		// Defensive: the library never returns an empty chunk without EOF.
		c.done = true
		return nil, io.EOF
	}
	return data, nil
}

// Reset makes the Chunker read a new stream r, reusing its buffer and key.
func (c *Chunker) Reset(r io.Reader) {
	c.c.Reset(r)
	c.done = false
	c.err = nil
}
