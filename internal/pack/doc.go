// Package pack lays blobs (compressed chunks and trees) out in the plaintext
// of a pack and encodes each blob's stored form; sealing and erasure coding
// happen elsewhere.
//
// A blob's stored form is one codec byte then the payload (Compress):
//
//	+-------+---------------------------+
//	| codec | payload                   |   codec 0: payload = raw bytes
//	|  1 B  |                           |   codec 1: payload = one zstd frame
//	+-------+---------------------------+
//
// so a stored form is never more than one byte longer than the raw data.
//
// A pack's plaintext is the stored blobs back to back, in index order and
// without gaps, then the index, then a fixed 13-byte trailer. Offsets are
// implicit (each blob starts where the previous one ends), so blobs can neither
// overlap nor hide unindexed bytes between them:
//
//	+--------+--------+-----+--------+---------------------+---------------------+
//	| blob 0 | blob 1 | ... | blob n | index               | trailer (13 B)      |
//	+--------+--------+-----+--------+---------------------+---------------------+
//
//	index   = uvarint(count) || count × entry
//	entry   = type (1 B: 1 data, 2 tree) || chunk ID (32 B)
//	          || uvarint(stored length) || uvarint(raw length)
//	trailer = index length (uint32 big-endian) || version (1 B, = 1) || "EMBPACK1"
//
// Limits: at most MaxBlobs blobs per pack, raw length at most MaxRawLength,
// stored length between 1 and raw length + 1. See docs/spec/pack.md.
package pack
