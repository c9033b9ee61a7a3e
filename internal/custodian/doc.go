// Package custodian is a custodian's own key pair: a hybrid post-quantum KEM
// key that dataset key shares are encrypted to, and a hybrid signing key for
// orders, generated on the custodian's own machine and stored as small,
// human-inspectable text files in the style of WireGuard and age keys.
//
// The secret identity file (conventionally NAME.key) and the public recipient
// file (NAME.pub) are line oriented UTF-8 text. Lines starting with '#' are
// comments, blank lines are ignored, trailing whitespace (including a CR) is
// trimmed. The first other line is the header; then exactly these fields, in
// any order, each once:
//
//	# embassy custodian identity - SECRET, keep offline
//	# fingerprint: 3b0c8d6f3a5e4c1f9a2b7d8e6f5a4b3c
//	embassy-custodian-identity-v1          (recipient: embassy-custodian-recipient-v1)
//	name: alice                            [a-z0-9][a-z0-9._-]{0,63}
//	kem-mlkem768x25519: <base64>           identity: 32-byte seed; recipient: 1216-byte public key
//	sign-ed25519-mldsa65: <base64>         identity: 64-byte sig seed; recipient: 1984-byte public key
//
// Base64 is the standard alphabet with padding, in canonical form. A
// "# fingerprint: HEX" comment, if present, must match the keys; Marshal
// always writes one. Marshal produces the canonical encoding, and
// Marshal(Parse(x)) is stable. Every parse failure wraps wire.ErrCorrupt and
// never quotes key material. The header line
// "embassy-custodian-identity-v1-passphrase" is reserved for a future
// passphrase-protected identity and is refused with ErrPassphrase.
//
// See docs/spec/custodian-key.md.
package custodian
