// Package ledger is a host's tamper-evident event log: a C2SP tlog-tiles
// Merkle log kept by tessera's POSIX driver, whose checkpoints carry two
// signatures (Ed25519 signed-note and ML-DSA-44 in the C2SP cosignature
// format), and the client side auditors use to check that the log only
// grows.
//
// Entries record commitments and identities, never names or content. Each
// is binary, encoded with internal/wire (uvarint/svarint are LEB128 in their
// shortest form; string is uvarint length then bytes):
//
//	magic    8    "EMBLENT1"
//	type     1    1 host-started, 2 shard-stored, 3 object-read,
//	              4 grant-presented, 5 proof-answered, 6 cosigned
//	time     svarint   Unix seconds, the host's clock
//	body     by type:
//	  host-started     config 32
//	  shard-stored     guest 16 | kind 1 (1 shards, 2 envelopes) | object 32 |
//	                   size uvarint | writer string (fingerprint, 1-128 bytes)
//	  object-read      guest 16 | kind 1 | object 32 | reader string |
//	                   grant flag 1 (0 none, 1 present) | [grant id 16, not all zero]
//	  grant-presented  guest 16 | grant id 16 | reader string
//	  proof-answered   guest 16 | challenge 32 | answer 32 | items uvarint
//	  cosigned         count uvarint (1-100) | count × (origin string (1-255) |
//	                   size uvarint | root 32)
//
// Nothing may follow the body; an entry is at most 65535 bytes.
//
// A checkpoint is a signed note (C2SP signed-note, tlog-checkpoint):
//
//	embassy.host/NAME            origin
//	1234                         tree size
//	base64(root)                 RFC 6962 root hash
//	                             blank line
//	— embassy.host/NAME base64(keyhash4 || ed25519 signature)
//	— embassy.host/NAME base64(keyhash4 || timestamp8 || ML-DSA-44 signature)
//	— witness base64(...)        cosignatures (only in cosigned-checkpoint)
//
// Durability: Append returns once tessera has written the entry's bundle,
// the tiles and its tree state, each fsynced; a checkpoint covering it is
// published within Config.CheckpointInterval (AwaitCheckpoint waits for it).
//
// See docs/spec/ledger.md.
package ledger
