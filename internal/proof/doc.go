// Package proof is storage proofs: a guest challenges a host to show random
// 16 KiB pieces of the shards it stores, and checks the answer against the
// shard addresses it already knows, without holding any shard bytes itself.
//
// A shard's address is the plain BLAKE3-256 of the whole shard, which is also
// the root of its BLAKE3/Bao hash tree. A host keeps, beside each shard, the
// shard's Bao outboard encoding (Outboard: the tree's inner chaining values,
// about 0.4% of the shard) so it can cut a Bao slice — one chunk group plus the
// sibling hashes on its path to the root — for any group. The guest checks the
// slice against the address with lukechampine.com/blake3/bao; no tree hashing
// is done here.
//
// An audit is three steps, all pure (no I/O, no clock, no randomness of their
// own):
//
//	guest: items := Sample(nonce, shards, m)       m from Required(loss, confidence)
//	       c := &Challenge{Guest, Nonce: nonce, Time: now, Items: items}
//	host:  a, err := Respond(c, open)              one Bao slice per item, or "missing"
//	guest: report, err := Verify(c, a, sizes)      per-item OK / missing / bad slice …
//
// Sample is deterministic from the nonce and the shard list, so a host (or an
// auditor) can recompute it and see that the guest chose fairly (Fair).
// Sampling is by bytes, not by shard: every 16 KiB group of every shard is
// equally likely, so a host that lost a fraction f of the bytes it holds
// escapes m items with probability (1 − f)^m.
//
// Wire formats (uvarint = unsigned LEB128 in its shortest form, svarint the
// zig-zag signed form; see docs/spec/proof.md):
//
//	challenge = "EMBPCHL1" | guest (16) | nonce (32) | svarint time |
//	            uvarint nitems | item*nitems
//	item      = shard address (32) | uvarint offset | uvarint length
//	answer    = "EMBPANS1" | challenge digest (32) | uvarint nslices |
//	            (uvarint len | bao slice)*nslices          len 0 = missing
//	outboard  = uint64 LE data length | (left CV (32) | right CV (32))*parents
//	            (Bao outboard, 16-chunk groups, pre-order; stored by the host)
//
// Encodings are canonical: ParseChallenge and ParseAnswer accept exactly the
// bytes Marshal produces, and every parse failure wraps wire.ErrCorrupt. The
// challenge digest is BLAKE3-256 of the marshalled challenge. Signing is the
// caller's: the signed bytes of a challenge or an answer are its marshalled
// form.
package proof
