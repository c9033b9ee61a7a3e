// Package chunkindex is the format of the agent's local chunk index: where
// each chunk already stored by a dataset lies (pack, offset, lengths), kept
// as a few immutable sorted runs that are written sequentially and merged,
// instead of a B-tree whose random keys make every batch rewrite most pages.
//
// A run is one file (docs/spec/chunk-index.md):
//
//	+--------------------------+--------------------------+-------------+
//	| records (count × 64 B)   | fences (blocks × 12 B)   | trailer 24 B|
//	+--------------------------+--------------------------+-------------+
//
//	record  = chunk ID (32) || pack ID (16) || offset (uint64)
//	          || stored length (uint32) || raw length (uint32)
//	fence   = first 8 bytes of the block's first chunk ID
//	          || CRC-32C of the block's records (uint32)
//	trailer = count (uint64) || CRC-32C of the fences and count (uint32)
//	          || 4 zero bytes || "EMBCIDX1"
//
// All integers are big-endian. Records are in strictly increasing chunk-ID
// order and grouped in blocks of 64 (4 KiB; the last may be shorter). A
// lookup binary-searches the fences, which are kept in memory (12 bytes per
// 64 chunks), then reads and checks one block. The package does no file
// I/O of its own: it reads through io.ReaderAt and writes to io.Writer.
package chunkindex
