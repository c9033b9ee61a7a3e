// Package snapshot is a snapshot's two small objects: the agent-signed
// envelope that hosts and auditors can check without keys, and the sealed
// record, private to the dataset's key holders, that points at the root tree.
//
// The envelope names a snapshot (guest, dataset, sequence number, the hash of
// the previous envelope) and every pack it needs with the address of each
// erasure-coded shard, so anyone holding the agent's public key can check that
// a snapshot is complete and that a dataset's history was not rolled back or
// forked. It reveals no file names and no content: only IDs, sizes, shard
// addresses, a time, counts, and the length of the sealed record.
//
// Wire formats (uvarint = unsigned LEB128 in its shortest form, svarint the
// zig-zag signed form; see docs/spec/envelope.md and docs/spec/record.md):
//
//	signed   = body | signature                       signature is the last 3373 bytes
//	body     = "EMBSENV1" | guest (16) | dataset (16) | uvarint seq | prev (32) |
//	           svarint time | k (1) | n (1) | (uvarint len | host)*n |
//	           uvarint npacks | pack*npacks |
//	           uvarint len | record
//	pack     = id (16) | uvarint size | uvarint shardsize | shard address (32) * n
//	signature = sig.Sign("snapshot-envelope", body)   Ed25519 (64) | ML-DSA-65 (3309)
//
//	record   = "EMBRECD1" | svarint time | uvarint len | hostname |
//	           uvarint npaths | (uvarint len | path)*npaths |
//	           uvarint npieces | ref*npieces (the root tree) |
//	           uvarint files | uvarint dirs | uvarint symlinks | uvarint bytes
//	ref      = id (32) | pack (16) | uvarint offset | uvarint length | uvarint rawlength
//
// The signature is a fixed-size trailer, so body and signature split without
// parsing and Verify checks the signature before it parses anything. An
// envelope's storage address is Hash(signed), BLAKE3-256 of the signed bytes,
// and the next envelope's Prev is that hash.
//
// Encodings are canonical: Parse and ParseRecord accept exactly the bytes
// Marshal produces. Every parse failure wraps wire.ErrCorrupt.
package snapshot
