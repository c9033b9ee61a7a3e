package pack

import (
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/embassy-project/embassy/internal/wire"
)

// Codecs of a blob's stored form (its first byte).
const (
	CodecRaw  byte = 0 // payload is the raw bytes
	CodecZstd byte = 1 // payload is one zstd frame with the content size set
)

// encoderLevel is zstd's SpeedFastest (level 1). On registry-like CSV text it
// compresses 1.5× as fast as SpeedDefault (252 vs 168 MB/s per core) for 4%
// more output (ratio 3.06 vs 3.18); compression is the slowest stage of the
// pipeline, so speed wins. Measurements: BenchmarkLevel, docs/spec/pack.md.
const encoderLevel = zstd.SpeedFastest

// The encoder and decoder are shared: EncodeAll and DecodeAll are safe for
// concurrent use, and each keeps up to GOMAXPROCS internal states.
var (
	encoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(encoderLevel),
			// One state per CPU: the binary raises GOMAXPROCS above the
			// CPU count so blocked file reads overlap, and zstd creates
			// every state up front and cycles through them (8 MiB each).
			zstd.WithEncoderConcurrency(min(runtime.NumCPU(), runtime.GOMAXPROCS(0))),
			// Single-segment frames always carry the content size, which
			// Decompress requires; without this the encoder omits it for
			// inputs under 256 bytes. Blobs are at most 4 MiB, so the
			// window (= content size) stays bounded.
			zstd.WithSingleSegment(true),
		)
		if err != nil {
			panic("pack: zstd encoder: " + err.Error())
		}
		return e
	})
	decoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0), // GOMAXPROCS
			zstd.WithDecoderMaxMemory(MaxRawLength),
			zstd.WithDecodeAllCapLimit(true),
		)
		if err != nil {
			panic("pack: zstd decoder: " + err.Error())
		}
		return d
	})
)

// Compress appends the stored form of raw to dst and returns the extended
// slice: CodecZstd and a zstd frame when that is shorter than raw, else
// CodecRaw and raw itself. The stored form is therefore at most len(raw)+1
// bytes. Compress is safe for concurrent use.
func Compress(dst, raw []byte) []byte {
	start := len(dst)
	if len(raw) > 0 {
		// The stored form is at most len(raw)+1 bytes; a frame that would be
		// longer is discarded below. Growing once avoids EncodeAll growing
		// the slice step by step.
		dst = slices.Grow(dst, len(raw)+64)
		dst = append(dst, CodecZstd)
		dst = encoder().EncodeAll(raw, dst)
		if len(dst)-start-1 < len(raw) {
			return dst
		}
	}
	dst = append(dst[:start], CodecRaw)
	return append(dst, raw...)
}

// Decompress appends the raw bytes of the stored form stored to dst and
// returns the extended slice. rawLen is the expected raw length (from the pack
// index); Decompress never produces more than rawLen bytes, and any mismatch,
// unknown codec or malformed frame is an error wrapping wire.ErrCorrupt. On
// error the returned slice is nil. Decompress is safe for concurrent use.
func Decompress(dst, stored []byte, rawLen int) ([]byte, error) {
	if rawLen < 0 || rawLen > MaxRawLength {
		return nil, wire.Corruptf("decompress blob: raw length %d outside [0, %d]", rawLen, MaxRawLength)
	}
	if len(stored) == 0 {
		return nil, wire.Corruptf("decompress blob: empty stored form")
	}
	codec, payload := stored[0], stored[1:]
	switch codec {
	case CodecRaw:
		if len(payload) != rawLen {
			return nil, wire.Corruptf("decompress blob: raw payload is %d bytes, want %d", len(payload), rawLen)
		}
		return append(dst, payload...), nil
	case CodecZstd:
		var h zstd.Header
		if err := h.Decode(payload); err != nil {
			return nil, wire.Corruptf("decompress blob: zstd header: %v", err)
		}
		if h.Skippable || !h.HasFCS || h.FrameContentSize != uint64(rawLen) {
			return nil, wire.Corruptf("decompress blob: zstd frame does not declare %d bytes", rawLen)
		}
		n := len(dst)
		grown := slices.Grow(dst, rawLen)
		out, err := decoder().DecodeAll(payload, grown[:n:n+rawLen])
		if err != nil {
			return nil, wire.Corruptf("decompress blob: %v", err)
		}
		if len(out) != n+rawLen {
			return nil, wire.Corruptf("decompress blob: decoded %d bytes, want %d", len(out)-n, rawLen)
		}
		if rawLen > 0 && &out[n] == &grown[:n+1][n] {
			return grown[:n+rawLen], nil // keep the caller's spare capacity
		}
		return out, nil
	default:
		return nil, wire.Corruptf("decompress blob: unknown codec %d", codec)
	}
}
