// Package witness is a C2SP tlog-witness (https://c2sp.org/tlog-witness): the
// server that cosigns a log's checkpoints once they are proven consistent with
// what it cosigned before, the client a log uses to ask for cosignatures, and
// the w-of-W policy that counts them. See docs/spec/witness.md.
//
// A witness holds two keys under one name and every cosignature it returns
// carries both: an Ed25519 cosignature/v1 (signature type 0x04) and an
// ML-DSA-44 cosignature (type 0x06), both from c2sp.org/tlog-cosignature. A
// policy counts a witness only when both verify.
//
// add-checkpoint request body (every line ends in "\n"; at most MaxRequestSize
// bytes):
//
//	old <size>                      decimal, no leading zeros; 0 on first contact
//	<base64 hash>                   0 to 63 consistency proof hashes (32 bytes each),
//	...                             from <size> to the checkpoint's size (RFC 6962)
//	                                an empty line
//	<origin>                        the signed checkpoint note (c2sp.org/tlog-checkpoint)
//	<size>
//	<base64 root hash>
//	[extension lines]
//
//	— <log key name> <base64(key hash || signature)>
//	...
//
// Responses: 200 with one signature line per witness key ("— <name>
// <base64>\n", Content-Type text/x.tlog.signature); 409 with the witness's
// size for the origin ("<size>\n", Content-Type text/x.tlog.size) when old is
// not that size; 409 (text/plain) when the sizes match but the root hashes do
// not; 404 for an unknown origin; 403 when not every configured log key signed
// the checkpoint; 422 when the proof does not verify; 400 for a malformed body
// or old > size; 413 for a body over the cap.
//
// State file, one per origin, <Dir>/<hex SHA-256("o:" || origin)>.state:
//
//	embassy-witness-state-v1
//	<origin>
//	<size>                          decimal, no leading zeros
//	<base64 root hash>              32 bytes
//	<unix seconds>                  when it was written (informative)
//
// The state is written to a temporary file, fsynced, renamed over the old one
// and the directory fsynced before a cosignature leaves the witness, and
// requests for one origin are serialised, so the witness never cosigns two
// checkpoints that are not consistent with each other.
//
// Check holds the consistency rules as a pure function; Witness is the thin
// HTTP and disk shell around it. Submit and Merge are the log's side: ask each
// witness, append the answers to the checkpoint; Policy.Count then decides
// whether w of W witnesses cosigned it with both keys.
//
// A host that runs a witness records its cosignatures in its own ledger
// through a Batcher (at most one batch per interval, only when something is
// new), and its ledger asks for cosignatures only when NeedsCosign says some
// new entry is not such a batch: otherwise hosts witnessing each other would
// trade cosign records forever.
package witness
