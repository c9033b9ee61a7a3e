// Package erasure cuts a sealed pack into N Reed–Solomon shard files, any K of
// which rebuild the pack.
//
// The code is the systematic Reed–Solomon code of klauspost/reedsolomon over
// GF(2^8) (polynomial 0x11D, Vandermonde matrix made systematic). The pack is
// zero-padded to K·L bytes, L = ceil(len(pack)/K); data payload j (j < K) is
// bytes [j·L, (j+1)·L) of the padded pack and payloads K…N−1 are parity. K = 1
// makes every shard a full replica. Each shard file carries a 48-byte header so
// that a lone shard names its pack, its place and the code it belongs to:
//
//	offset size field
//	     0    8 magic "EMBSHRD1"
//	     8    1 version (1)
//	     9    1 K, data shards (1…255)
//	    10    1 N, total shards (K…255)
//	    11    1 index of this shard (0…N−1)
//	    12   16 pack ID
//	    28    8 pack length in bytes, big-endian
//	    36    8 payload length L in bytes, big-endian (= ceil(pack length / K))
//	    44    4 CRC-32C (Castagnoli) of bytes 0…43, big-endian
//	    48    L payload
//
// A shard is addressed by the BLAKE3-256 of the whole file (see
// internal/shardstore); that address, checked by the caller before Decode, is
// what guarantees payload integrity. Reed–Solomon alone cannot tell a flipped
// payload byte from a genuine one when exactly K shards are present. The header
// CRC and the cross-checks in Decode (all headers agree with the parameters,
// each other and their position; padding is zero) only catch accidents and
// mix-ups such as a shard of another pack.
//
// The package is a pure core: no I/O, no clock, and the codec runs on the
// caller's goroutine (parallelism belongs to the pipeline, one pack per core).
// The byte layout is specified in docs/spec/shard.md.
package erasure
