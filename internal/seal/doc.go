// Package seal encrypts a pack (or a snapshot record) to a dataset's hybrid
// post-quantum public key, with a fresh key per object that is bound
// all-or-nothing to the whole ciphertext.
//
// Construction (docs/spec/seal.md is normative):
//
//  1. A fresh random 32-byte key K.
//  2. Body: the plaintext in 64 KiB segments, each sealed with AES-256-GCM
//     under K; nonce = 11-byte big-endian segment counter || last-segment
//     flag (0x01 on the final segment, else 0x00); additional data = the
//     encoded AD. Empty plaintext is one empty final segment.
//  3. M = K XOR BLAKE3-keyed(DeriveKey("embassy v1 seal aont", AD), body).
//     M is wrapped with HPKE (MLKEM768-X25519, HKDF-SHA256, AES-256-GCM) to
//     the dataset public key, info "embassy v1 seal", aad = the encoded AD.
//
// Because K can only be recovered from M and the hash of every body byte,
// someone holding the dataset private key but not the whole body learns
// nothing about any segment: fewer than k Reed–Solomon shards reveal nothing
// even to a key holder.
//
// Sealed layout (all integers big-endian or LEB128 uvarints):
//
//	+----------+---------+------+--------+---------+--------+
//	| EMBSEAL1 | version | kind | guest  | dataset | object |   encoded AD, 58 B
//	|   8 B    |  1 B=1  | 1 B  |  16 B  |  16 B   |  16 B  |
//	+----------+---------+------+--------+---------+--------+
//	| uvarint(1168) | HPKE enc (1120 B) || HPKE ciphertext of M (48 B) |   key slot
//	+---------------+---------------------------------------------------+
//	| uvarint(body length) | segment 0 | segment 1 | ... | final segment |
//	+----------------------+-----------+-----------+-----+---------------+
//	segment = AES-256-GCM(K, nonce, 64 KiB of plaintext, AD) = 65552 B;
//	the final segment holds 0..64 KiB of plaintext (0 only when all is empty).
package seal
