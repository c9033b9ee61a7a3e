// Package pack lays blobs (compressed chunks and trees) out in the plaintext
// of a pack and encodes stored forms; sealing and erasure coding happen
// elsewhere.
//
// A stored form is one codec byte then the payload (Compress):
//
//	+-------+---------------------------+
//	| codec | payload                   |   codec 0: payload = raw bytes
//	|  1 B  |                           |   codec 1: payload = one zstd frame
//	+-------+---------------------------+
//
// so a stored form is never more than one byte longer than the raw data.
//
// Blobs live in frames: a frame is the stored form of one or more blobs'
// raw bytes concatenated, so that small files compress together. A pack's
// plaintext is the frames back to back, in index order and without gaps,
// then the index, then a fixed 13-byte trailer. Offsets are implicit (each
// frame starts where the previous one ends, each blob where the previous
// blob of its frame ends), so frames can neither overlap nor hide unindexed
// bytes between them:
//
//	+---------+---------+-----+---------+---------------------+---------------------+
//	| frame 0 | frame 1 | ... | frame m | index               | trailer (13 B)      |
//	+---------+---------+-----+---------+---------------------+---------------------+
//
//	index   = uvarint(count) || count × entry
//	entry   = type (1 B: 1 data, 2 tree) || chunk ID (32 B)
//	          || uvarint(stored length of a new frame, or 0: same frame as
//	             the previous entry) || uvarint(raw length)
//	trailer = index length (uint32 big-endian) || version (1 B, = 2) || "EMBPACK1"
//
// Version 1 packs (every blob its own frame, no 0 entries) are still read.
// Limits: at most MaxBlobs blobs per pack, raw length of a blob at most
// MaxRawLength and of a frame at most MaxFrameLength, stored length of a
// frame between 1 and its raw length + 1. See docs/spec/pack.md.
package pack
