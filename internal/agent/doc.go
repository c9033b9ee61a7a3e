// Package agent is the guest's home agent: it turns a file tree (or a stream)
// into one snapshot of a dataset — chunked, deduplicated, compressed, sealed
// to the dataset's public key, erasure-coded into one shard per host — and
// signs the snapshot's envelope. The agent holds only public keys and the
// dedup MAC key: it can write snapshots but cannot read them back.
//
// Pipeline (every stage bounded, so memory does not grow with the input):
//
//	walker ──chunks──▶ workers (keyed BLAKE3, dedup, zstd) ──blobs──▶ packers
//	   │                                                              │ full pack
//	   └─ directory finishers (tree blobs) ◀── refs ──┘               ▼
//	                                          uploaders (seal, Reed–Solomon, put shard i on host i)
//
// A blob's position is known as soon as it is added to a pack, so trees are
// built while packs are still being uploaded; the envelope is signed and
// stored only after every pack it lists is durable on every host.
package agent
