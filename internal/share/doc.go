// Package share splits a dataset secret into Shamir shares, each encrypted to
// one custodian's post-quantum KEM key, and rebuilds it from a threshold of
// them, checked against the public dataset identity the shares carry, so that
// wrong or mixed shares give a named error and never a wrong key.
//
// A share file is binary (internal/wire; varints are unsigned LEB128 in their
// shortest form):
//
//	header (public, read by Inspect, the AEAD's additional data):
//	  magic        8      "EMBSHAR1"
//	  custodian    uvarint len || name (at most 64 bytes)
//	  fingerprint  16     custodian key fingerprint
//	  dataset      uvarint len || guest.Dataset encoding (at most 64 KiB)
//	body:
//	  enc          1120   HPKE encapsulated key (MLKEM768-X25519)
//	  sealed       uvarint len || AES-256-GCM ciphertext of the share (65 + 16 bytes)
//
// The share is sealed with HPKE base mode (RFC 9180; KEM MLKEM768-X25519,
// KDF HKDF-SHA256, AEAD AES-256-GCM, info "embassy v1 share") to the
// custodian's KEM public key, with the header bytes (magic included) as
// additional data: editing any header byte makes decryption fail.
//
// The 65-byte share is the 64-byte dataset secret's Shamir share over
// GF(2^8) as github.com/openbao/openbao/sdk/v2/helper/shamir encodes it: 64
// y-values then the x-coordinate (1 to 255). With a threshold of 1 there is
// no polynomial: every share is the secret itself followed by x = 0.
//
// HPKE base mode does not authenticate the sender: anyone who knows a
// custodian's public key can make a share file for them. Restore is protected
// instead by Combine: all shares must carry byte-identical dataset identities
// and the rebuilt secret must match that identity's public key and MAC
// commitment. Operators compare the dataset fingerprint printed at restore
// with the one published at init.
//
// Secret buffers (the encoded secret, plaintext shares) are cleared after use
// where this package owns them; this is best effort, since Go may have
// copied them and the hpke private key cannot be cleared.
//
// See docs/spec/share.md.
package share
