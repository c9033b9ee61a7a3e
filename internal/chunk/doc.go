// Package chunk splits a byte stream into content-defined chunks with a
// secret-keyed FastCDC and names each chunk by a secret-keyed BLAKE3 hash.
//
// Both the cut points and the chunk IDs depend on the dataset's dedup key
// (Key), so someone who sees only chunk or pack sizes and IDs (a host) cannot
// confirm that a guessed file is in the archive, and two datasets with
// different keys share neither IDs nor cut points. The same key always gives
// the same chunks for the same bytes: that is what makes deduplication work
// across snapshots.
//
// Key derivation (BLAKE3 derive-key mode, see docs/spec/chunk.md):
//
//	chunker key = BLAKE3-DeriveKey("embassy v1 chunker",  Key)   32 bytes
//	ID key      = BLAKE3-DeriveKey("embassy v1 chunk-id", Key)   32 bytes
//	ID          = BLAKE3-keyed(ID key, chunk plaintext)          32 bytes
//
// Chunking is FastCDC ("fastcdc-v1.0.0" of PlakarKorp/go-cdc-chunkers) with
// normalisation level 2 and its Gear table derived from the chunker key:
//
//	stream:  |<-- ≥MinSize, ≤MaxSize -->|<-- ... -->|<- last: 1..MaxSize ->|
//	         MinSize = 256 KiB   AvgSize = 1 MiB   MaxSize = 4 MiB
//
// Changing any of these parameters changes every chunk ID and so costs one
// full re-upload; they are part of the format.
package chunk
