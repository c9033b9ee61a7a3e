// Package shardstore is the provider-side contract for storing opaque
// objects — shard files and snapshot envelopes — under their BLAKE3-256
// address, write-once.
//
// An object's ID is the plain (unkeyed) BLAKE3-256 of its bytes, which is also
// the root of the BLAKE3/Bao hash tree over those bytes, so a host can later
// prove random slices of an object against the address alone:
//
//	ID = BLAKE3-256(object bytes)       32 bytes, written as 64 lowercase hex digits
//
// A Store refuses bytes that do not hash to the ID they are put under, never
// overwrites or deletes, treats a second Put of the same ID as a no-op, and
// re-hashes on Get so that rot on disk surfaces as wire.ErrCorrupt rather than
// as wrong bytes. Implementations live in sub-packages (fs, mem) and all run
// the conformance suite in storetest. docs/spec/shard.md gives the addressing,
// docs/spec/store-layout.md the directory layout of the fs store.
package shardstore
