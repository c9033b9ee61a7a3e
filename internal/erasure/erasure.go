package erasure

import (
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/reedsolomon"

	"github.com/embassy-project/embassy/internal/wire"
)

const (
	// Magic opens every shard file.
	Magic = "EMBSHRD1"
	// Version is the header version this package writes and reads.
	Version = 1
	// HeaderSize is the length of the fixed header before the payload.
	HeaderSize = 48
	// MaxShards bounds N: the index and counts are single bytes.
	MaxShards = 255
)

// ErrTooFewShards is matched (errors.Is) by a *TooFewError.
var ErrTooFewShards = errors.New("too few shards")

// TooFewError reports that fewer than K shards were supplied to Decode.
type TooFewError struct {
	Have, Need int
}

func (e *TooFewError) Error() string {
	return fmt.Sprintf("too few shards: have %d, need %d", e.Have, e.Need)
}

// Is makes errors.Is(err, ErrTooFewShards) true.
func (e *TooFewError) Is(target error) bool { return target == ErrTooFewShards }

// ShardError names the shard whose bytes are wrong; Err wraps wire.ErrCorrupt.
// A caller holding more than K shards can drop that one and try again.
type ShardError struct {
	Index int
	Err   error
}

func (e *ShardError) Error() string { return fmt.Sprintf("shard %d: %v", e.Index, e.Err) }

// Unwrap returns the underlying error.
func (e *ShardError) Unwrap() error { return e.Err }

func shardCorrupt(i int, format string, args ...any) error {
	return &ShardError{Index: i, Err: wire.Corruptf(format, args...)}
}

// Params are the code's parameters: any K of N shards rebuild a pack.
type Params struct{ K, N int }

// Validate checks 1 ≤ K ≤ N ≤ 255.
func (p Params) Validate() error {
	if p.K < 1 || p.N < p.K || p.N > MaxShards {
		return fmt.Errorf("erasure parameters k=%d n=%d: need 1 ≤ k ≤ n ≤ %d", p.K, p.N, MaxShards)
	}
	return nil
}

func (p Params) String() string { return fmt.Sprintf("%d-of-%d", p.K, p.N) }

// Header is the fixed header of a shard file.
type Header struct {
	K, N, Index int
	PackID      [16]byte
	PackLen     uint64
	PayloadLen  uint64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Marshal returns the 48-byte encoding of h, which must be valid (as
// ParseShard would accept it).
func (h Header) Marshal() []byte { return h.appendTo(make([]byte, 0, HeaderSize)) }

func (h Header) appendTo(b []byte) []byte {
	start := len(b)
	w := wire.NewWriter(b)
	w.Fixed([]byte(Magic))
	w.Byte(Version)
	w.Byte(byte(h.K))
	w.Byte(byte(h.N))
	w.Byte(byte(h.Index))
	w.Fixed(h.PackID[:])
	w.Uint64(h.PackLen)
	w.Uint64(h.PayloadLen)
	w.Uint32(crc32.Checksum(w.Bytes()[start:], castagnoli))
	return w.Bytes()
}

// payloadLen returns ceil(packLen/k).
func payloadLen(packLen uint64, k int) uint64 {
	l := packLen / uint64(k)
	if packLen%uint64(k) != 0 {
		l++
	}
	return l
}

// ParseShard parses a shard file into its header and payload (which aliases
// shard). Every failure wraps wire.ErrCorrupt.
func ParseShard(shard []byte) (Header, []byte, error) {
	r := wire.NewReader(shard, "shard header")
	r.Magic(Magic)
	if v := r.Byte(); r.Err() == nil && v != Version {
		r.Failf("unsupported version %d", v)
	}
	var h Header
	h.K = int(r.Byte())
	h.N = int(r.Byte())
	h.Index = int(r.Byte())
	r.FixedInto(h.PackID[:])
	h.PackLen = r.Uint64()
	h.PayloadLen = r.Uint64()
	sum := r.Uint32()
	if err := r.Err(); err != nil {
		return Header{}, nil, err
	}
	if got := crc32.Checksum(shard[:HeaderSize-4], castagnoli); got != sum {
		return Header{}, nil, wire.Corruptf("shard header: checksum %08x, want %08x", got, sum)
	}
	if h.K < 1 || h.N < h.K || h.Index >= h.N {
		return Header{}, nil, wire.Corruptf("shard header: k=%d n=%d index=%d out of range", h.K, h.N, h.Index)
	}
	if want := payloadLen(h.PackLen, h.K); h.PayloadLen != want {
		return Header{}, nil, wire.Corruptf("shard header: payload length %d, want %d for pack length %d and k=%d",
			h.PayloadLen, want, h.PackLen, h.K)
	}
	payload := shard[HeaderSize:]
	if uint64(len(payload)) != h.PayloadLen {
		return Header{}, nil, wire.Corruptf("shard: payload is %d bytes, header says %d", len(payload), h.PayloadLen)
	}
	return h, payload, nil
}

// codecs caches one encoder per parameter set; encoders are safe for
// concurrent use and building one inverts a K×K matrix.
var codecs sync.Map // Params → reedsolomon.Encoder

func codec(p Params) (reedsolomon.Encoder, error) {
	if c, ok := codecs.Load(p); ok {
		return c.(reedsolomon.Encoder), nil
	}
	// One goroutine: the pipeline runs packs in parallel, so the codec should
	// not compete for the same cores (and this package starts no goroutines).
	c, err := reedsolomon.New(p.K, p.N-p.K, reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		return nil, fmt.Errorf("new reed-solomon codec %v: %w", p, err)
	}
	c2, _ := codecs.LoadOrStore(p, c)
	return c2.(reedsolomon.Encoder), nil
}

// Encode cuts pack into N shard files; shard i belongs to host i.
func Encode(p Params, packID [16]byte, pack []byte) ([][]byte, error) {
	return EncodeInto(nil, p, packID, pack)
}

// BufferSize is the length of the buffer EncodeInto needs to cut the N
// shards of a pack of packLen bytes from.
func BufferSize(p Params, packLen int) int {
	return p.N * shardStride(HeaderSize+int(payloadLen(uint64(packLen), p.K)))
}

// shardStride is where each shard of size bytes starts in EncodeInto's
// buffer: a multiple of 4 KiB, so that shards cut from a page-aligned buffer
// are page-aligned too and a store can write them with O_DIRECT.
func shardStride(size int) int { return (size + 4095) &^ 4095 }

// slotOffset is where Slot places a pack of packLen bytes in EncodeInto's
// buffer: as far up as lets EncodeInto move data payload i down to shard i,
// in order, without overwriting payload i+1 before it moves. Payload i lies
// (K-1-i)·(stride-l) bytes above its place, so the last one is already
// there, and all of it fits: X + K·l = (K-1)·stride + HeaderSize + l ≤
// K·stride.
func slotOffset(p Params, packLen int) (off, l, stride int) {
	l = int(payloadLen(uint64(packLen), p.K))
	stride = shardStride(HeaderSize + l)
	return (p.K-1)*(stride-l) + HeaderSize, l, stride
}

// Slot returns buf, grown to BufferSize(p, packLen) if it is smaller, and
// the packLen bytes of it (capacity packLen) where the caller may build the
// pack itself. Given that slice, EncodeInto moves the data payloads into
// place within buf instead of copying the pack from elsewhere, so a pack
// needs no buffer of its own besides its shards. p must be valid.
func Slot(buf []byte, p Params, packLen int) (full, pack []byte) {
	off, _, stride := slotOffset(p, packLen)
	if n := p.N * stride; cap(buf) < n {
		buf = make([]byte, n)
	} else {
		buf = buf[:n]
	}
	return buf, buf[off : off+packLen : off+packLen]
}

// EncodeInto is Encode with the shards cut from buf when it is large enough
// (its contents are overwritten), so a caller coding many packs can reuse
// one buffer. pack must not overlap buf, except as the slice Slot returned
// for it (same buf, same length), whose bytes are then moved rather than
// copied.
func EncodeInto(buf []byte, p Params, packID [16]byte, pack []byte) ([][]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	_, l, stride := slotOffset(p, len(pack))
	size := HeaderSize + l
	if cap(buf) < p.N*stride {
		buf = make([]byte, p.N*stride)
	} else {
		buf = buf[:p.N*stride]
	}
	shards := make([][]byte, p.N)
	payloads := make([][]byte, p.N)
	for i := range shards {
		s := buf[i*stride : i*stride+size : i*stride+size]
		shards[i] = s
		payloads[i] = s[HeaderSize:]
	}
	// Data payloads first, in order (from Slot's place each moves down,
	// with copy's memmove, onto bytes already moved or unused), then the
	// padding and headers, which lie outside every payload.
	filled := make([]int, p.K)
	for i := 0; i < p.K; i++ {
		if i*l < len(pack) {
			filled[i] = copy(payloads[i], pack[i*l:])
		}
	}
	h := Header{K: p.K, N: p.N, PackID: packID, PackLen: uint64(len(pack)), PayloadLen: uint64(l)}
	for i := range shards {
		if i < p.K {
			clear(payloads[i][filled[i]:]) // the last data shards are padded with zeros
		}
		h.Index = i
		h.appendTo(shards[i][:0])
	}
	if l > 0 && p.N > p.K {
		c, err := codec(p)
		if err != nil {
			return nil, err
		}
		if err := c.Encode(payloads); err != nil {
			return nil, fmt.Errorf("encode pack %x: %w", packID, err)
		}
	}
	return shards, nil
}

// parseAll parses the non-nil shards and checks that their headers agree with
// p, with their position and with each other. It returns the common header
// (zero if no shard is present), the payloads (nil where missing) and how
// many are present.
func parseAll(p Params, shards [][]byte) (Header, [][]byte, int, error) {
	if err := p.Validate(); err != nil {
		return Header{}, nil, 0, err
	}
	if len(shards) != p.N {
		return Header{}, nil, 0, fmt.Errorf("got %d shard slots, want n=%d", len(shards), p.N)
	}
	headers := make([]Header, p.N)
	payloads := make([][]byte, p.N)
	have := 0
	for i, s := range shards {
		if s == nil {
			continue
		}
		h, payload, err := ParseShard(s)
		if err != nil {
			return Header{}, nil, 0, &ShardError{Index: i, Err: err}
		}
		if h.K != p.K || h.N != p.N {
			return Header{}, nil, 0, shardCorrupt(i, "header says k=%d n=%d, want k=%d n=%d", h.K, h.N, p.K, p.N)
		}
		if h.Index != i {
			return Header{}, nil, 0, shardCorrupt(i, "header says index %d", h.Index)
		}
		headers[i], payloads[i] = h, payload
		have++
	}
	// The header most shards share is taken as right (ties: the lowest index
	// wins); the first shard that disagrees is blamed.
	type key struct {
		id          [16]byte
		pack, width uint64
	}
	votes := make(map[key]int)
	var ref key
	best := 0
	for i, h := range headers {
		if shards[i] == nil {
			continue
		}
		k := key{h.PackID, h.PackLen, h.PayloadLen}
		votes[k]++
		if votes[k] > best {
			best, ref = votes[k], k
		}
	}
	var common Header
	for i, h := range headers {
		if shards[i] == nil {
			continue
		}
		if (key{h.PackID, h.PackLen, h.PayloadLen}) != ref {
			return Header{}, nil, 0, shardCorrupt(i, "header (pack %x, length %d) disagrees with the other shards (pack %x, length %d)",
				h.PackID, h.PackLen, ref.id, ref.pack)
		}
		common = h
	}
	common.Index = 0
	return common, payloads, have, nil
}

// checkPadding reports whether the bytes of the data payloads past the pack's
// end are zero, as Encode writes them.
func checkPadding(h Header, data [][]byte) error {
	l := h.PayloadLen
	for j, d := range data {
		start := uint64(j) * l
		if start+l <= h.PackLen {
			continue
		}
		from := uint64(0)
		if h.PackLen > start {
			from = h.PackLen - start
		}
		for _, b := range d[from:] {
			if b != 0 {
				return wire.Corruptf("shards of pack %x are inconsistent: non-zero padding in data shard %d", h.PackID, j)
			}
		}
	}
	return nil
}

// Decode rebuilds a pack from any K or more shard files: shards has N slots,
// slot i holds shard i or nil if it is missing. The shards' addresses must have
// been checked by the caller; Decode checks only that the headers agree (with
// p, their slot and each other; a *ShardError wrapping wire.ErrCorrupt names
// the first that does not) and that the padding is zero. Fewer than K shards
// give a *TooFewError.
func Decode(p Params, shards [][]byte) ([]byte, error) {
	h, payloads, have, err := parseAll(p, shards)
	if err != nil {
		return nil, err
	}
	if have < p.K {
		return nil, &TooFewError{Have: have, Need: p.K}
	}
	l := int(h.PayloadLen)
	out := make([]byte, p.K*l)
	if l == 0 {
		return out, nil
	}
	// Present data payloads are copied into place; missing ones get a
	// zero-length window onto their place in out, which the codec fills.
	work := make([][]byte, p.N)
	missing := false
	for i, pl := range payloads {
		switch {
		case i >= p.K:
			work[i] = pl
		case pl != nil:
			work[i] = out[i*l : (i+1)*l : (i+1)*l]
			copy(work[i], pl)
		default:
			work[i] = out[i*l : i*l : (i+1)*l]
			missing = true
		}
	}
	if missing {
		c, err := codec(p)
		if err != nil {
			return nil, err
		}
		if err := c.ReconstructData(work); err != nil {
			return nil, fmt.Errorf("reconstruct pack %x: %w", h.PackID, err)
		}
		for j := range p.K {
			copy(out[j*l:(j+1)*l], work[j]) // no-op when the codec used out
		}
	}
	data := make([][]byte, p.K)
	for j := range data {
		data[j] = out[j*l : (j+1)*l]
	}
	if err := checkPadding(h, data); err != nil {
		return nil, err
	}
	return out[:h.PackLen:h.PackLen], nil
}

// Verify checks that all N shard files are present, that their headers agree
// and that their payloads form one codeword (parity matches data, padding is
// zero). A mismatch wraps wire.ErrCorrupt; it does not say which shard is bad.
func Verify(p Params, shards [][]byte) error {
	h, payloads, have, err := parseAll(p, shards)
	if err != nil {
		return err
	}
	if have < p.N {
		return &TooFewError{Have: have, Need: p.N}
	}
	if h.PayloadLen == 0 {
		return nil
	}
	if err := checkPadding(h, payloads[:p.K]); err != nil {
		return err
	}
	if p.N == p.K {
		return nil
	}
	c, err := codec(p)
	if err != nil {
		return err
	}
	ok, err := c.Verify(payloads)
	if err != nil {
		return fmt.Errorf("verify pack %x: %w", h.PackID, err)
	}
	if !ok {
		return wire.Corruptf("shards of pack %x: parity does not match data", h.PackID)
	}
	return nil
}
